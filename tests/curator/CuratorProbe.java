/*
 * CuratorProbe — drives Apache Curator's own x-discovery objects (ServiceDiscovery,
 * ServiceProvider, ServiceCache) for zklb's integration tests, so that wire
 * compatibility is checked against Curator itself and not against JSON written by
 * Python. Built with javac against Debian's Curator 5.4 jars; see
 * tests/integration/curator.py, which compiles, starts and talks to it.
 *
 * Protocol: one JSON object per line on stdin, one JSON object per line on stdout
 * ({"ok":true,...} or {"ok":false,"error":"<exception class>: <message>",
 * "trace":[...]}). Logging (Curator, ZooKeeper) goes to stderr. Commands:
 *
 *   {"op":"open","d":D,"connect":HOSTS,"basePath":P,
 *    "payload":"map"|"class"|"list"|"string"|"integer"|"long"|"object"|"none",
 *    "sessionTimeoutMs":N,"serializer":"default"|"full"}
 *       a CuratorFramework + ServiceDiscovery built the usual way:
 *       ServiceDiscoveryBuilder.builder(Map | InstanceDetails | List | String | Integer
 *       | Long | Object | Void .class)
 *       with the default JsonInstanceSerializer (which writes no "enabled" field), or
 *       with "full": new JsonInstanceSerializer<>(payloadClass, false), which does.
 *       Waits for the connection.
 *   {"op":"register","d":D,"name":N,"id":I,"address":A,"port":P,"sslPort":S,
 *    "payload":{...},"uriSpec":"{scheme}://{address}:{port}","enabled":B,
 *    "serviceType":"DYNAMIC"}
 *       registerService; → the instance as Curator serialized it ("json") and the
 *       znode children of the service afterwards ("nodes").
 *   {"op":"update",...same fields...}   updateService (same name and id)
 *   {"op":"unregister","d":D,"name":N,"id":I}
 *   {"op":"query","d":D,"name":N}       queryForInstances → "instances"
 *   {"op":"query_one","d":D,"name":N,"id":I}   queryForInstance → "instance"
 *   {"op":"names","d":D}                queryForNames → "names"
 *   {"op":"nodes","d":D,"name":N}       the service's znode children, sorted → "nodes"
 *   {"op":"provider","d":D,"name":N}    a started ServiceProvider (made once per d+name):
 *       getAllInstances → "instances", getInstance → "picked"
 *   {"op":"cache","d":D,"name":N}       a started ServiceCache (made once per d+name,
 *       with a listener counting cacheChanged): getInstances → "instances",
 *       "changes", and "errors": what Curator logged at WARNING or above since the
 *       cache was made (its listeners' exceptions are only logged)
 *   {"op":"errors"}                     every WARNING+ log record so far → "errors"
 *   {"op":"close_session","d":D}        close the CuratorFramework only, as a process
 *       that dies would: ZooKeeper ends the session and drops its ephemeral nodes
 *       (the ServiceDiscovery does not unregister anything itself)
 *   {"op":"close","d":D}                close caches, providers, the ServiceDiscovery
 *       (which unregisters its instances) and the client
 *   {"op":"ping"}  {"op":"quit"}
 *
 * Each instance is reported as {"name","id","address","port","sslPort","enabled",
 * "serviceType","registrationTimeUTC","uri" (buildUriSpec(), or null),
 * "payloadClass","payload"}.
 */
package zklbtest;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.curator.x.discovery.ServiceCache;
import org.apache.curator.x.discovery.ServiceDiscovery;
import org.apache.curator.x.discovery.ServiceDiscoveryBuilder;
import org.apache.curator.x.discovery.ServiceInstance;
import org.apache.curator.x.discovery.ServiceInstanceBuilder;
import org.apache.curator.x.discovery.ServiceProvider;
import org.apache.curator.x.discovery.ServiceType;
import org.apache.curator.x.discovery.UriSpec;
import org.apache.curator.x.discovery.details.JsonInstanceSerializer;
import org.apache.curator.x.discovery.details.ServiceCacheListener;

/** The payload class a typical Curator user defines (Curator's own example has one). */
class InstanceDetails {
    private String zone;
    private int weight;
    private String description;

    public InstanceDetails() {
    }

    public String getZone() { return zone; }
    public void setZone(String zone) { this.zone = zone; }
    public int getWeight() { return weight; }
    public void setWeight(int weight) { this.weight = weight; }
    public String getDescription() { return description; }
    public void setDescription(String description) { this.description = description; }
}

public final class CuratorProbe {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final List<ObjectNode> LOGGED = new ArrayList<>();

    /** One Curator application: a client and the ServiceDiscovery on it. */
    private static final class App {
        final CuratorFramework client;
        final ServiceDiscovery<Object> discovery;
        final Class<?> payloadClass;
        final String basePath;
        final Map<String, ServiceInstance<Object>> registered = new HashMap<>();
        final Map<String, ServiceProvider<Object>> providers = new LinkedHashMap<>();
        final Map<String, ServiceCache<Object>> caches = new LinkedHashMap<>();
        final Map<String, AtomicInteger> changes = new HashMap<>();
        final Map<String, Integer> logMark = new HashMap<>();

        App(CuratorFramework client, ServiceDiscovery<Object> discovery, Class<?> payloadClass,
            String basePath) {
            this.client = client;
            this.discovery = discovery;
            this.payloadClass = payloadClass;
            this.basePath = basePath;
        }
    }

    private final Map<String, App> apps = new HashMap<>();

    public static void main(String[] args) throws Exception {
        installLogCapture();
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        CuratorProbe probe = new CuratorProbe();
        ObjectNode hello = JSON.createObjectNode();
        hello.put("ok", true);
        hello.put("curator", ServiceDiscovery.class.getPackage().getImplementationVersion());
        out.println(JSON.writeValueAsString(hello));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isBlank())
                continue;
            ObjectNode reply;
            boolean quit = false;
            try {
                JsonNode cmd = JSON.readTree(line);
                quit = "quit".equals(cmd.path("op").asText());
                reply = probe.handle(cmd);
                reply.put("ok", true);
            } catch (Throwable t) {
                reply = JSON.createObjectNode();
                reply.put("ok", false);
                reply.put("error", describe(t));
                ArrayNode trace = reply.putArray("trace");
                for (Throwable c = t; c != null; c = c.getCause())
                    trace.add(describe(c));
            }
            out.println(JSON.writeValueAsString(reply));
            if (quit)
                break;
        }
        probe.closeAll();
        System.exit(0);
    }

    private static String describe(Throwable t) {
        return t.getClass().getName() + ": " + t.getMessage();
    }

    /* slf4j-jdk14 routes Curator's logging to java.util.logging: keep every WARNING+. */
    private static void installLogCapture() {
        Logger root = Logger.getLogger("");
        root.addHandler(new Handler() {
            @Override
            public void publish(LogRecord r) {
                if (r.getLevel().intValue() < Level.WARNING.intValue())
                    return;
                ObjectNode o = JSON.createObjectNode();
                o.put("level", r.getLevel().getName());
                o.put("logger", r.getLoggerName());
                String msg = r.getMessage();
                if (msg != null && r.getParameters() != null) {
                    try {
                        msg = java.text.MessageFormat.format(msg, r.getParameters());
                    } catch (IllegalArgumentException e) {
                        /* keep the raw message */
                    }
                }
                o.put("message", msg);
                if (r.getThrown() != null) {
                    ArrayNode chain = o.putArray("thrown");
                    for (Throwable c = r.getThrown(); c != null; c = c.getCause())
                        chain.add(describe(c));
                }
                synchronized (LOGGED) {
                    LOGGED.add(o);
                }
            }

            @Override
            public void flush() {
            }

            @Override
            public void close() {
            }
        });
    }

    private static ArrayNode loggedSince(int mark) {
        ArrayNode a = JSON.createArrayNode();
        synchronized (LOGGED) {
            for (int i = mark; i < LOGGED.size(); i++)
                a.add(LOGGED.get(i));
        }
        return a;
    }

    private static int logSize() {
        synchronized (LOGGED) {
            return LOGGED.size();
        }
    }

    private App app(JsonNode cmd) {
        String d = cmd.path("d").asText();
        App a = apps.get(d);
        if (a == null)
            throw new IllegalArgumentException("no open discovery \"" + d + "\"");
        return a;
    }

    private static String need(JsonNode cmd, String field) {
        JsonNode v = cmd.get(field);
        if (v == null || v.isNull())
            throw new IllegalArgumentException("missing \"" + field + "\"");
        return v.asText();
    }

    @SuppressWarnings("unchecked")
    private ObjectNode handle(JsonNode cmd) throws Exception {
        ObjectNode r = JSON.createObjectNode();
        String op = need(cmd, "op");
        switch (op) {
        case "ping":
        case "quit":
            return r;
        case "open": {
            String d = need(cmd, "d");
            if (apps.containsKey(d))
                throw new IllegalArgumentException("discovery \"" + d + "\" is already open");
            String kind = cmd.path("payload").asText("map");
            Class<?> cls;
            switch (kind) {
            case "map": cls = Map.class; break;
            case "class": cls = InstanceDetails.class; break;
            case "list": cls = List.class; break;
            case "string": cls = String.class; break;
            case "integer": cls = Integer.class; break;
            case "long": cls = Long.class; break;
            case "object": cls = Object.class; break;
            case "none": cls = Void.class; break;
            default: throw new IllegalArgumentException("payload must be map, class, list, string, integer, long, object or none");
            }
            CuratorFramework client = CuratorFrameworkFactory.builder()
                .connectString(need(cmd, "connect"))
                .sessionTimeoutMs(cmd.path("sessionTimeoutMs").asInt(10000))
                .connectionTimeoutMs(5000)
                .retryPolicy(new ExponentialBackoffRetry(100, 3))
                .build();
            String basePath = need(cmd, "basePath");
            ServiceDiscoveryBuilder<Object> builder = (ServiceDiscoveryBuilder<Object>)
                (ServiceDiscoveryBuilder<?>) ServiceDiscoveryBuilder.builder(cls);
            builder.client(client).basePath(basePath);
            /* Curator 5.4's default serializer, JsonInstanceSerializer(cls), is in
             * "compatible" mode: it writes the pre-5 format, without "enabled", so an
             * instance registered with enabled(false) is read back as enabled. The
             * full format needs new JsonInstanceSerializer<>(cls, false). */
            boolean full = cmd.path("serializer").asText("default").equals("full");
            if (full)
                builder.serializer(new JsonInstanceSerializer<Object>((Class<Object>) cls, false));
            ServiceDiscovery<Object> sd = builder.build();
            /* The ServiceDiscovery re-registers its instances when its connection
             * listener sees CONNECTED. Delivered after a registration, that re-creates
             * a DYNAMIC_SEQUENTIAL instance as a second node. So: start it before the
             * client (nothing is registered yet), and return only once a listener
             * added after it has seen CONNECTED, i.e. once its own has run. */
            sd.start();
            java.util.concurrent.CountDownLatch connected = new java.util.concurrent.CountDownLatch(1);
            client.getConnectionStateListenable().addListener((c, state) -> {
                if (state == ConnectionState.CONNECTED)
                    connected.countDown();
            });
            client.start();
            if (!connected.await(15, TimeUnit.SECONDS)) {
                sd.close();
                client.close();
                throw new IllegalStateException("not connected to " + cmd.path("connect").asText()
                                                + " within 15 s");
            }
            apps.put(d, new App(client, sd, cls, basePath));
            r.put("payloadClass", cls.getName());
            return r;
        }
        case "register":
        case "update": {
            App a = app(cmd);
            ServiceInstance<Object> inst = build(a, cmd);
            if (op.equals("register"))
                a.discovery.registerService(inst);
            else
                a.discovery.updateService(inst);
            a.registered.put(inst.getName() + "/" + inst.getId(), inst);
            r.set("instance", report(inst));
            r.set("nodes", nodes(a, inst.getName()));
            return r;
        }
        case "unregister": {
            App a = app(cmd);
            String key = need(cmd, "name") + "/" + need(cmd, "id");
            ServiceInstance<Object> inst = a.registered.remove(key);
            if (inst == null)
                throw new IllegalArgumentException("not registered here: " + key);
            a.discovery.unregisterService(inst);
            r.set("nodes", nodes(a, inst.getName()));
            return r;
        }
        case "query": {
            App a = app(cmd);
            r.set("instances", report(a.discovery.queryForInstances(need(cmd, "name"))));
            return r;
        }
        case "query_one": {
            App a = app(cmd);
            ServiceInstance<Object> i = a.discovery.queryForInstance(need(cmd, "name"), need(cmd, "id"));
            if (i == null)
                r.putNull("instance");
            else
                r.set("instance", report(i));
            return r;
        }
        case "nodes": {
            App a = app(cmd);
            r.set("nodes", nodes(a, need(cmd, "name")));
            return r;
        }
        case "names": {
            App a = app(cmd);
            ArrayNode names = r.putArray("names");
            for (String n : a.discovery.queryForNames())
                names.add(n);
            return r;
        }
        case "provider": {
            App a = app(cmd);
            String name = need(cmd, "name");
            ServiceProvider<Object> p = a.providers.get(name);
            if (p == null) {
                p = a.discovery.serviceProviderBuilder().serviceName(name).build();
                p.start();
                a.providers.put(name, p);
            }
            r.set("instances", report(p.getAllInstances()));
            ServiceInstance<Object> picked = p.getInstance();
            if (picked == null)
                r.putNull("picked");
            else
                r.set("picked", report(picked));
            return r;
        }
        case "cache": {
            App a = app(cmd);
            String name = need(cmd, "name");
            ServiceCache<Object> c = a.caches.get(name);
            if (c == null) {
                a.logMark.put(name, logSize());
                AtomicInteger n = new AtomicInteger();
                a.changes.put(name, n);
                c = a.discovery.serviceCacheBuilder().name(name).build();
                c.addListener(new ServiceCacheListener() {
                    @Override
                    public void cacheChanged() {
                        n.incrementAndGet();
                    }

                    @Override
                    public void stateChanged(CuratorFramework client, ConnectionState s) {
                    }
                });
                c.start();
                a.caches.put(name, c);
            }
            r.set("instances", report(c.getInstances()));
            r.put("changes", a.changes.get(name).get());
            r.set("errors", loggedSince(a.logMark.get(name)));
            return r;
        }
        case "errors":
            r.set("errors", loggedSince(0));
            return r;
        case "close_session": {
            App a = apps.remove(need(cmd, "d"));
            if (a == null)
                throw new IllegalArgumentException("no open discovery \"" + cmd.path("d").asText() + "\"");
            a.client.close();
            return r;
        }
        case "close": {
            App a = apps.remove(need(cmd, "d"));
            if (a == null)
                throw new IllegalArgumentException("no open discovery \"" + cmd.path("d").asText() + "\"");
            close(a);
            return r;
        }
        default:
            throw new IllegalArgumentException("unknown op \"" + op + "\"");
        }
    }

    private ServiceInstance<Object> build(App a, JsonNode cmd) throws Exception {
        ServiceInstanceBuilder<Object> b = ServiceInstance.builder();
        b.name(need(cmd, "name")).id(need(cmd, "id")).address(need(cmd, "address"));
        JsonNode port = cmd.get("port");
        if (port != null && !port.isNull())
            b.port(port.asInt());	/* absent: the builder keeps a null port (sslPort only) */
        JsonNode ssl = cmd.get("sslPort");
        if (ssl != null && !ssl.isNull())
            b.sslPort(ssl.asInt());
        JsonNode payload = cmd.get("payload");
        if (payload != null && !payload.isNull()) {
            if (a.payloadClass == Void.class)
                throw new IllegalArgumentException("this discovery has no payload type");
            b.payload(JSON.convertValue(payload, a.payloadClass));
        }
        JsonNode uri = cmd.get("uriSpec");
        if (uri != null && !uri.isNull())
            b.uriSpec(new UriSpec(uri.asText()));
        if (cmd.has("enabled"))
            b.enabled(cmd.get("enabled").asBoolean());
        if (cmd.has("serviceType"))
            b.serviceType(ServiceType.valueOf(cmd.get("serviceType").asText()));
        return b.build();
    }

    private static ArrayNode nodes(App a, String name) throws Exception {
        ArrayNode arr = JSON.createArrayNode();
        String path = a.basePath + "/" + name;
        if (a.client.checkExists().forPath(path) != null) {
            List<String> kids = new ArrayList<>(a.client.getChildren().forPath(path));
            java.util.Collections.sort(kids);
            for (String k : kids)
                arr.add(k);
        }
        return arr;
    }

    private static ObjectNode report(ServiceInstance<Object> i) {
        ObjectNode o = JSON.createObjectNode();
        o.put("name", i.getName());
        o.put("id", i.getId());
        o.put("address", i.getAddress());
        if (i.getPort() == null) o.putNull("port"); else o.put("port", i.getPort());
        if (i.getSslPort() == null) o.putNull("sslPort"); else o.put("sslPort", i.getSslPort());
        o.put("enabled", i.isEnabled());
        o.put("serviceType", i.getServiceType() == null ? null : i.getServiceType().name());
        o.put("registrationTimeUTC", i.getRegistrationTimeUTC());
        String uri = null;
        if (i.getUriSpec() != null) {
            try {
                uri = i.buildUriSpec();
            } catch (RuntimeException e) {
                uri = "error: " + describe(e);
            }
        }
        o.put("uri", uri);
        Object p = i.getPayload();
        o.put("payloadClass", p == null ? null : p.getClass().getName());
        o.set("payload", p == null ? null : JSON.valueToTree(p));
        return o;
    }

    private static ArrayNode report(Collection<ServiceInstance<Object>> list) {
        List<ServiceInstance<Object>> sorted = new ArrayList<>(list);
        sorted.sort((x, y) -> x.getId().compareTo(y.getId()));
        ArrayNode a = JSON.createArrayNode();
        for (ServiceInstance<Object> i : sorted)
            a.add(report(i));
        return a;
    }

    private static void close(App a) {
        for (ServiceCache<Object> c : a.caches.values()) {
            try { c.close(); } catch (Exception e) { /* closing anyway */ }
        }
        for (ServiceProvider<Object> p : a.providers.values()) {
            try { p.close(); } catch (Exception e) { /* closing anyway */ }
        }
        try { a.discovery.close(); } catch (Exception e) { /* closing anyway */ }
        a.client.close();
    }

    private void closeAll() {
        for (App a : apps.values())
            close(a);
        apps.clear();
    }
}
