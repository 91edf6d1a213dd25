"""Apache Curator itself, for the integration tests: tests/curator/CuratorProbe.java.

The probe is compiled once per build (javac against Debian's Curator 5.4 jars; the
classes are cached in $ZKLB_BUILD/curator-probe/<hash of the source>/), started once
per test module (a JVM takes a second or two) and driven with one JSON line per
command on stdin, one JSON reply per line on stdout. Python sees Curator's answers
as plain dicts; a command that threw in Java raises CuratorError with the Java
exception ("java.lang.ClassCastException: ...").

    probe = CuratorProbe(workdir).start()
    app = probe.open(zk.hosts, "/services", payload="class")   # a Curator application
    app.register("web", "i1", "127.0.0.1", 9001, payload={"zone": "a"})
    app.query("web")        # queryForInstances → [instance dicts]
    app.cache("web")        # ServiceCache → {"instances", "changes", "errors"}
    app.close_session()     # the client goes away: ZooKeeper drops its ephemeral nodes
    probe.stop()

Each instance dict: name, id, address, port, sslPort, enabled, serviceType,
registrationTimeUTC, uri (buildUriSpec()), payloadClass (the Java class Curator
made of the payload), payload.
"""

import fcntl
import glob
import hashlib
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import harness

SOURCE = harness.ROOT / "tests" / "curator" / "CuratorProbe.java"
MAIN_CLASS = "zklbtest.CuratorProbe"
# What ServiceDiscovery needs at run time (the jars' own Class-Path manifests name
# most of these; listing them keeps javac and java independent of that). slf4j-jdk14
# sends Curator's logging to java.util.logging, where the probe records it.
JARS = [f"/usr/share/java/{j}.jar" for j in (
    "curator-x-discovery", "curator-recipes", "curator-framework", "curator-client",
    "zookeeper", "zookeeper-jute", "guava", "jackson-databind", "jackson-core",
    "jackson-annotations", "slf4j-api", "slf4j-jdk14")]
PACKAGES = ("default-jdk-headless libcurator-discovery-java libcurator-recipes-java "
            "libcurator-framework-java libcurator-client-java")


class CuratorError(Exception):
    """A probe command threw in Java; str() is 'exception.Class: message'."""

    def __init__(self, reply):
        super().__init__(reply.get("error"))
        self.reply = reply
        self.trace = reply.get("trace", [])


def missing():
    """What is missing to build and run the probe, or None."""
    if not shutil.which("javac"):
        return "javac (default-jdk-headless)"
    gone = [j for j in JARS if not os.path.exists(j)]
    if gone:
        return ", ".join(gone)
    return None


def compiled(build=None):
    """The directory holding the compiled probe for the current source, compiling it
    when needed (once per build dir and source hash; safe against parallel runs)."""
    why = missing()
    if why:
        raise AssertionError(f"Curator probe needs {why}: run tests/deps ({PACKAGES})")
    src = SOURCE.read_bytes()
    key = hashlib.sha256(src + "\0".join(JARS).encode()).hexdigest()[:16]
    base = Path(build or harness.build_dir()) / "curator-probe"
    out = base / key
    marker = out / "ok"
    if marker.exists():
        return out
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return out
        tmp = base / f".tmp-{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        t0 = time.monotonic()
        r = subprocess.run(["javac", "-Xlint:all", "-Xlint:-options", "-Xlint:-path",
                            "-d", str(tmp), "-cp", ":".join(JARS), str(SOURCE)],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise AssertionError(f"javac {SOURCE} failed:\n{r.stdout}{r.stderr}")
        (tmp / "ok").write_text(f"compiled in {time.monotonic() - t0:.1f}s\n{r.stderr}")
        shutil.rmtree(out, ignore_errors=True)
        os.rename(tmp, out)
        # Older versions of the source are of no further use.
        for old in base.iterdir():
            if old.is_dir() and old.name != key and not old.name.startswith(".tmp-"):
                shutil.rmtree(old, ignore_errors=True)
    return out


class CuratorProbe:
    """One JVM running CuratorProbe; many Curator applications (CuratorApp) in it."""

    def __init__(self, workdir, timeout=20.0):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "curator-probe.log"
        self.timeout = timeout
        self.proc = None
        self.version = None
        self.start_seconds = None        # JVM start → the probe's first line
        self.first_open_seconds = None   # the first open(): Curator's classes load here
        self._lines = queue.Queue()
        self._lock = threading.Lock()
        self._names = itertools.count(1)

    def start(self):
        classes = compiled()
        t0 = time.monotonic()
        cmd = ["java", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
               "-Djava.net.preferIPv4Stack=true",
               # slf4j-jdk14: one line per record, on stderr (the log file)
               "-Djava.util.logging.SimpleFormatter.format=%1$tT.%1$tL %4$s %3$s: %5$s%6$s%n",
               "-cp", ":".join([str(classes)] + JARS), MAIN_CLASS]
        with open(self.log_path, "ab") as log:
            self.proc = harness.track(subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                start_new_session=True))
        threading.Thread(target=self._read, daemon=True).start()
        hello = self._reply(30.0)
        # Debian's jar has no Implementation-Version: take it from the file name.
        versioned = sorted(glob.glob("/usr/share/java/curator-x-discovery-*.jar"))
        self.version = hello.get("curator") or (
            versioned[-1].rsplit("-", 1)[1].removesuffix(".jar") if versioned else "?")
        self.start_seconds = time.monotonic() - t0
        return self

    def _read(self):
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _reply(self, timeout):
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"Curator probe: no reply within {timeout}s; "
                                 f"log tail:\n{self.log_tail()}") from None
        if line is None:
            raise AssertionError(f"Curator probe exited ({self.proc.poll()}); log tail:\n"
                                 f"{self.log_tail()}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise CuratorError(reply)
        return reply

    def call(self, op, timeout=None, **args):
        """Send one command; → the reply dict, or raise CuratorError."""
        with self._lock:
            if self.proc is None or self.proc.poll() is not None:
                raise AssertionError("Curator probe is not running; log tail:\n"
                                     + self.log_tail())
            self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
            self.proc.stdin.flush()
            return self._reply(timeout or self.timeout)

    def open(self, hosts, base_path, payload="map", session_timeout_ms=10000, name=None,
             serializer="default"):
        """A new Curator application (client + ServiceDiscovery) reading and writing
        payloads as a Map ('map'), as InstanceDetails ('class'), as a List ('list'),
        a String, Integer, Long or Object ('string', 'integer', 'long', 'object')
        or none ('none').
        serializer='default' is ServiceDiscoveryBuilder's own JsonInstanceSerializer
        (Curator 5.4: the "compatible" format, no "enabled" field written);
        'full' is new JsonInstanceSerializer<>(cls, false), which writes "enabled"."""
        d = name or f"app{next(self._names)}"
        t0 = time.monotonic()
        self.call("open", d=d, connect=hosts, basePath=base_path, payload=payload,
                  sessionTimeoutMs=session_timeout_ms, serializer=serializer)
        if self.first_open_seconds is None:
            self.first_open_seconds = time.monotonic() - t0
        return CuratorApp(self, d, payload)

    def errors(self):
        """Every WARNING+ record Curator and ZooKeeper logged in this JVM."""
        return self.call("errors")["errors"]

    def log_tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout=10.0):
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            with self._lock:
                self.proc.stdin.write(b'{"op":"quit"}\n')
                self.proc.stdin.close()
            self.proc.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(10)


class CuratorApp:
    """One Curator application in the probe: its own ZooKeeper session and
    ServiceDiscovery (payload type fixed at open)."""

    def __init__(self, probe, name, payload):
        self.probe = probe
        self.name = name
        self.payload = payload

    def _call(self, op, **args):
        return self.probe.call(op, d=self.name, **args)

    def register(self, service, id_, address, port, **extra):
        """registerService. extra: sslPort, payload (dict), uriSpec (str), enabled,
        serviceType. → {"instance": the ServiceInstance registered, "nodes": the
        service's znode children afterwards}"""
        return self._call("register", name=service, id=id_, address=address, port=port,
                          **extra)

    def update(self, service, id_, address, port, **extra):
        """updateService with a new ServiceInstance of the same name and id."""
        return self._call("update", name=service, id=id_, address=address, port=port,
                          **extra)

    def unregister(self, service, id_):
        return self._call("unregister", name=service, id=id_)

    def query(self, service):
        """queryForInstances → [instance dicts] (raises CuratorError as Curator does)."""
        return self._call("query", name=service)["instances"]

    def query_one(self, service, id_):
        return self._call("query_one", name=service, id=id_)["instance"]

    def nodes(self, service):
        """The service's znode children as this application's client lists them."""
        return self._call("nodes", name=service)["nodes"]

    def names(self):
        return self._call("names")["names"]

    def provider(self, service):
        """A ServiceProvider (started at the first call): → {"instances": getAllInstances,
        "picked": getInstance}."""
        return self._call("provider", name=service)

    def cache(self, service):
        """A ServiceCache (started at the first call): → {"instances": getInstances,
        "changes": cacheChanged calls, "errors": WARNING+ log records since it started}."""
        return self._call("cache", name=service)

    def close_session(self):
        """Close the client only: ZooKeeper ends the session and removes its ephemeral
        nodes (the ServiceDiscovery unregisters nothing itself)."""
        return self._call("close_session")

    def close(self):
        """ServiceDiscovery.close() (unregisters its instances), then the client."""
        return self._call("close")


def ids(instances):
    return sorted(i["id"] for i in instances)
