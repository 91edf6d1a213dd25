"""The status page at / in headless Chromium (Debian's chromium), against a
zklb whose service comes from a real ZooKeeper: four Curator instances, one
of them named with markup and quotes; one is then removed while a
connection to it is open (draining), one is refused by its port until
passive health ejects it. The page's table, read from Chromium's DOM, shows
exactly that — with JavaScript (rendered from its poll of /status) and
without (the server's own table) — and the hostile id stays text. A
screenshot is saved under the test's tmp_path. Chromium is driven over its
DevTools pipe, so the page opened first can be watched as it polls (and
--dump-dom, which evaluates script, is not needed with scripts disabled).
The announce and sync tables are checked in /status, the page's document.
"""

import base64
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import time
from html.parser import HTMLParser

import pytest

import harness
from harness import ask_tag, free_addr, wait_until, zklb_config

pytestmark = pytest.mark.zookeeper

SVC = "web"
# A node name can hold anything but '/' and NUL: markup and both quotes.
EVIL = "evil\"'><img src=x onerror=alert(1)><script>window.pwned=1"

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-pipe"]


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe
    (--remote-debugging-pipe: commands on its fd 3, answers on its fd 4), with
    a fresh profile. One page; scripts on or off."""

    def __init__(self, profile, js=True):
        exe = shutil.which("chromium")
        if not exe:
            pytest.fail("chromium is missing: run tests/deps")
        to_r, self._to = os.pipe()
        self._from, from_w = os.pipe()
        def fds_3_and_4():
            # Through fds >= 100 first: either pipe end may itself be 3 or 4.
            r = fcntl.fcntl(to_r, fcntl.F_DUPFD, 100)
            w = fcntl.fcntl(from_w, fcntl.F_DUPFD, 100)
            os.dup2(r, 3)
            os.dup2(w, 4)
        self.proc = subprocess.Popen(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=fds_3_and_4, pass_fds=(3, 4), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.track(self.proc)
        os.close(to_r)
        os.close(from_w)
        self._buf = b""
        self._id = 0
        self.events = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Emulation.setScriptExecutionDisabled", value=not js, session=True)

    def _read(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._from, 1 << 16)
            if not chunk:
                raise AssertionError("chromium closed its DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, session=False, timeout=30, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read(timeout)
            if m.get("id") == self._id:
                assert "error" not in m, f"{method}: {m['error']}"
                return m.get("result", {})
            self.events.append(m)

    def load(self, url, timeout=30):
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self._read_event(deadline)

    def _read_event(self, deadline):
        self.events.append(self._read(max(0.01, deadline - time.monotonic())))

    def dom(self):
        root = self.call("DOM.getDocument", session=True, depth=-1)["root"]
        return self.call("DOM.getOuterHTML", session=True, nodeId=root["nodeId"])["outerHTML"]

    def screenshot(self, path, width=1560, height=320):
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width,
                  height=height, deviceScaleFactor=1, mobile=False)
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self):
        try:
            os.write(self._to, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        os.close(self._to)
        os.close(self._from)


@pytest.fixture
def browser(tmp_path):
    """browser(js=True) → a started Chromium, closed at teardown."""
    made = []

    def make(js=True):
        c = Chromium(tmp_path / f"profile-{len(made)}", js=js)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


class Page(HTMLParser):
    """The parts of the status page a test looks at: body attributes, the
    script elements, and per section its title and rows (class, cells)."""

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.body = {}
        self.scripts = 0
        self.imgs = 0
        self.sections = {}
        self._title = None
        self._in = None
        self._text = ""
        self._row = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        elif tag == "script":
            self.scripts += 1
        elif tag == "img":
            self.imgs += 1
        elif tag in ("h2", "td"):
            self._in, self._text = tag, ""
        elif tag == "tr" and self._title:
            self._row = (a.get("class"), [])

    def handle_endtag(self, tag):
        if tag == "h2" and self._in == "h2":
            self._title = self._text
            self.sections[self._title] = []
            self._in = None
        elif tag == "td" and self._in == "td":
            self._row[1].append(self._text)
            self._in = None
        elif tag == "tr" and self._row is not None:
            if self._row[1]:
                self.sections[self._title].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._in:
            self._text += data

    def instances(self, service=SVC):
        """{instance id: (row class, state cell, active cell)}"""
        return {cells[0]: (cls, cells[2], cells[4])
                for cls, cells in self.sections[f"service {service}"]}


def curator(id_, port):
    return json.dumps({"name": SVC, "id": id_, "address": "127.0.0.1", "port": port,
                       "sslPort": None, "payload": None, "registrationTimeUTC": 1,
                       "serviceType": "DYNAMIC", "uriSpec": None}).encode()


def test_status_page_in_chromium(tmp_path, backend, closed_port, zklb, shared_zookeeper,
                                 zk_path, kazoo_client, browser):
    k = kazoo_client(shared_zookeeper.hosts)
    a, b, c = backend("a", mode="tag"), backend("b", mode="tag"), backend("c", mode="tag")
    dead = closed_port()
    for id_, port in (("a", a.port), ("b", b.port), (EVIL, c.port), ("dead", dead.port)):
        k.create(f"{zk_path}/{id_}", curator(id_, port), makepath=True, ephemeral=True)

    svc = {"listen": free_addr(), "balance": "round_robin", "retries": 3,
           "discovery": {"type": "curator", "path": zk_path},
           "health": {"failures_to_eject": 2, "base_ejection": "5m", "max_ejection": "5m"}}
    lb = zklb(zklb_config({SVC: svc}, workdir=tmp_path,
                          zookeeper={"hosts": shared_zookeeper.hosts, "session_timeout": "4s"}))
    addr = lb.listen(SVC)
    url = f"http://{lb.admin}/"

    def instances():
        return {i["id"]: i for i in harness.instances_of(lb.services()[SVC])}
    wait_until(lambda: set(instances()) == {"a", "b", EVIL, "dead"}, 10, what="4 instances")

    # The page is open before anything happens: what follows reaches it by its poll.
    live = browser(js=True)
    live.load(url)
    first = Page(live.dom())
    assert {i: r[0] for i, r in first.instances().items()} == {
        "a": "healthy", "b": "healthy", EVIL: "healthy", "dead": "healthy"}

    # Hold a connection to b, then remove b: it drains. Round robin with
    # retries reaches "dead" on the way and ejects it (clients never see it).
    held = []

    def hold_b():
        tag, s = ask_tag(addr, keep=True)
        if tag == "b":
            held.append(s)
            return True
        s.close()
        return False
    wait_until(hold_b, 10, interval=0, what="a connection to b")
    k.delete(f"{zk_path}/b")
    wait_until(lambda: instances().get("b", {}).get("state") == "draining", 10,
               what="b draining")
    wait_until(lambda: ask_tag(addr) and instances()["dead"]["state"] == "ejected", 10,
               interval=0, what="dead ejected")

    def polled():
        page = Page(live.dom())
        rows = page.instances()
        if rows.get("b", ("",))[0] == "draining" and rows["dead"][0] == "ejected":
            return page
        return None
    page = wait_until(polled, 10, interval=0.2, what="the open page to show the changes")
    dom = live.dom()
    assert int(page.body.get("data-polls", "0")) >= 1, "the script never rendered a poll"
    assert page.scripts == 1 and page.imgs == 0, "markup from ZooKeeper became elements"
    assert live.call("Runtime.evaluate", session=True,
                     expression="String(window.pwned)")["result"]["value"] == "undefined"
    rows = page.instances()
    assert set(rows) == {"a", "b", EVIL, "dead"}, rows
    assert rows["a"][:2] == ("healthy", "healthy")
    assert rows[EVIL][:2] == ("healthy", "healthy"), "the hostile id is shown as text"
    assert rows["b"][:3] == ("draining", "draining", "1")
    assert re.fullmatch(r"ejected, (\d+m\d\ds|\d+s) left", rows["dead"][1]), rows["dead"]
    assert re.search(r"zookeeper</b> connected for \d+(ms|s), session 0x[0-9a-f]+", dom), dom[:800]
    facts = dom[dom.index("service web"):]
    assert re.search(r"discovery</b> connected, last change \d+(ms|s) ago", facts), facts[:600]
    assert "panic</b> no" in facts

    shot = tmp_path / "status-page.png"
    live.screenshot(shot)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, len(data)
    print(f"\nscreenshot: {shot}")

    # b's last connection ends: it leaves the table. Without JavaScript the
    # server's own table says the same.
    for s in held:
        s.close()
    wait_until(lambda: "b" not in instances(), 10, what="b gone")
    plain = browser(js=False)
    plain.load(url)
    page = Page(plain.dom())
    assert page.body.get("data-polls") == "0", "scripts ran although disabled"
    assert page.imgs == 0
    rows = page.instances()
    assert set(rows) == {"a", EVIL, "dead"}, rows
    assert rows["dead"][1].startswith("ejected, ")
    assert rows[EVIL][1] == "healthy"
    plain.screenshot(tmp_path / "status-page-nojs.png")

    # /status is the document both renderings come from; the page loads no
    # asset from elsewhere.
    status, headers, body = lb.admin_get("/status")
    assert status == 200 and headers["content-type"].startswith("application/json")
    doc = json.loads(body)
    assert [t["title"] for t in doc["tables"]] == ["service web"]
    assert {r["cells"][0] for r in doc["tables"][0]["rows"]} == {"a", EVIL, "dead"}
    _, _, html = lb.admin_get("/")
    assert not re.search(rb"(src|href)=\"(https?:)?//", html), "an external asset"


def test_status_shows_announce_sync_and_render(tmp_path, backend, zklb, shared_zookeeper,
                                               zk_path, kazoo_client):
    """/status (the page's document) has an announce row that is registered
    once its check passes, a sync row that is synced once the file is written
    (one whose node does not exist says missing), and a render row once its
    file is written; a service with listen: off says so."""
    k = kazoo_client(shared_zookeeper.hosts)
    local = backend("local", mode="echo")
    node = f"{zk_path}/config/app.properties"
    k.create(node, b"v=1\n", makepath=True)
    out = tmp_path / "app.properties"
    rendered = tmp_path / "web.lines"
    cfg = zklb_config({}, workdir=tmp_path,
                      zookeeper={"hosts": shared_zookeeper.hosts, "session_timeout": "4s"},
                      announce=[{"service": "web", "base_path": f"{zk_path}/services",
                                 "address": "127.0.0.1", "port": local.port,
                                 "check": {"type": "tcp", "interval": "100ms", "rise": 1}}],
                      sync=[{"path": node, "file": str(out)},
                            {"path": f"{zk_path}/config/absent", "file": str(tmp_path / "absent")}],
                      render=[{"service": "web", "file": str(rendered), "format": "lines",
                               "wait": {"min": "50ms", "max": "1s"}}])
    cfg["services"] = {"web": {"listen": "off", "discovery": {
        "type": "static", "backends": [f"127.0.0.1:{local.port}"]}}}
    lb = zklb(cfg)

    def tables():
        doc = lb.admin_json("/status")
        return {t["title"]: t for t in doc["tables"]}

    def announce_row():
        rows = tables()["announce"]["rows"]
        assert len(rows) == 1
        cells = dict(zip(tables()["announce"]["columns"], rows[0]["cells"]))
        return (rows[0]["class"], cells) if cells["node"] == "registered" else None
    cls, cells = wait_until(announce_row, 10, interval=0.1, what="the announced node")
    assert cls == "healthy" and cells["check"] == "up" and cells["service"] == "web"
    assert cells["announced as"] == f"127.0.0.1:{local.port} at {zk_path}/services/web/{cells['id']}"
    assert k.exists(f"{zk_path}/services/web/{cells['id']}")

    def sync_rows():
        t = tables()["sync"]
        rows = {r["cells"][0]: dict(zip(t["columns"], r["cells"])) for r in t["rows"]}
        return rows if rows[node]["state"] == "synced" and out.exists() else None
    rows = wait_until(sync_rows, 10, interval=0.1, what="the file synced")
    assert rows[node]["file"] == str(out) and rows[node]["writes"] == "1"
    assert re.fullmatch(r"\d+(ms|s) ago", rows[node]["last change"]), rows[node]
    assert rows[f"{zk_path}/config/absent"]["state"] == "missing"

    def render_row():
        t = tables()["render"]
        cells = dict(zip(t["columns"], t["rows"][0]["cells"]))
        return (t["rows"][0]["class"], cells) if cells["written"] == "1" else None
    cls, cells = wait_until(render_row, 10, interval=0.1, what="the rendered file")
    assert (cls, cells["state"], cells["instances"]) == ("healthy", "idle", "1"), cells
    assert cells["file"] == str(rendered) and f"127.0.0.1:{local.port}" in rendered.read_text()
    facts = dict(f[:2] for f in tables()["service web"]["facts"])
    assert facts["listen"] == "off (not proxied)"


def test_status_slow_start_and_rate(backend, zklb):
    """An instance in its slow-start window says how far its weight has
    ramped; the connection rate comes from the counter's last seconds."""
    b1 = backend("b1", mode="tag")
    lb = zklb(services={SVC: harness.static_service([(b1, 100)], slow_start="10m")})
    addr = lb.listen(SVC)

    def service():
        t = {t["title"]: t for t in lb.admin_json("/status")["tables"]}[f"service {SVC}"]
        return dict(f[:2] for f in t["facts"]), dict(zip(t["columns"], t["rows"][0]["cells"]))
    facts, row = service()
    assert re.fullmatch(r"healthy, slow start (\d+)%", row["state"]), row
    assert 10 <= int(re.search(r"(\d+)%", row["state"]).group(1)) < 20
    assert row["weight"] == "100"
    # 40 connections: the rate over the window is above zero and at most 40
    # over the shortest span two samples can be apart (1 s, less a timer's
    # lateness made up on the next tick: 0.9 s).
    for _ in range(40):
        assert ask_tag(addr) == "b1"
    wait_until(lambda: service()[0]["connections"] == "40", 5, what="40 connections counted")

    def rate():
        r = service()[0]["rate"]
        return float(r.split()[0]) if r != "-" and float(r.split()[0]) > 0 else None
    per_s = wait_until(rate, 5, interval=0.2, what="a connection rate")
    assert 0 < per_s <= 40 / 0.9, per_s
