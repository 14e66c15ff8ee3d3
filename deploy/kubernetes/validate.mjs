// Offline validation of deploy/kubernetes (run through deploy/kubernetes/validate).
//
// 1. Every YAML file parses (duplicate keys are errors).
// 2. Every kustomization lists every manifest of its directory, each listed file exists, and
//    every sigil config of config/ is used by a configMapGenerator.
// 3. Every object is checked against the Kubernetes API schema of kubernetes-models (types,
//    required fields) and, strictly, for fields the API does not have (a typo is an error, as
//    kubectl --validate=strict would say): the field lists come from the package's type
//    declarations.
// 4. Our rules for every container: image, resources (requests and limits, cpu and memory),
//    securityContext (allowPrivilegeEscalation false, readOnlyRootFilesystem, capabilities
//    drop ALL and add only what the workload is allowed, runAsNonRoot unless the pod says why
//    not), seccomp RuntimeDefault, liveness and readiness probes; pods without a service
//    account token; hostPID and hostPath only where allowed.
// 5. References: ServiceAccounts, ConfigMaps (keys too), Secrets, PVCs and namespaces exist
//    (in the manifests, the generators, or the list of objects the operator creates); Service
//    selectors and named ports match pods; the path after --config is a mounted config.
// 6. The sigil configs pass `run --check-config` of the real binaries; the agent's
//    server_address names a Service of the manifests by its DNS name
//    (<service>.<namespace>.svc[.<cluster domain>]:<port>, a port the Service has) or is the
//    clusterIP:port of one; workloads mount the directory the agent serves its socket in.
//
// usage: node validate.mjs DIR   (SIGIL_SERVER_BIN, SIGIL_AGENT_BIN: the binaries)
import fs from "node:fs";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import YAML from "yaml";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MODELS = path.join(HERE, "node_modules", "kubernetes-models");
const NODE_MODULES = path.join(HERE, "node_modules");

// Objects the operator creates before `kubectl apply -k` (docs/deploy.md, "Kubernetes").
const EXTERNAL = new Map([
  ["Secret/sigil/sigil-database", "libpq conninfo of the external PostgreSQL"],
  ["ConfigMap/sigil/sigil-node-ca", "the CAs of the node certificates (x509pop)"],
  ["ConfigMap/sigil-agent/sigil-bootstrap-bundle", "sigil-server bundle show, once it runs"],
]);
// Capabilities a container may add, by namespace/pod template name/container.
const CAP_ADD = new Map([["sigil-agent/sigil-agent/sigil-agent", ["SYS_PTRACE", "KILL", "DAC_READ_SEARCH"]]]);
const HOST_PID = new Set(["sigil-agent/sigil-agent"]);
const HOST_PATHS = new Map([
  ["/run/sigil/agent/public", "the Workload API socket directory"],
  ["/var/lib/sigil/agent", "the agent's data_dir"],
  ["/etc/sigil/agent", "the node certificate (x509pop)"],
]);
const WORKLOAD_KINDS = new Set(["Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet", "Pod"]);
const KUSTOMIZATION_KEYS = new Set(["apiVersion", "kind", "resources", "configMapGenerator",
  "secretGenerator", "generatorOptions", "labels", "namespace", "patches", "images"]);

const errors = [];
const err = (where, msg) => errors.push(`${where}: ${msg}`);
const rel = (root, p) => path.relative(root, p) || ".";

// ---- strict fields from the type declarations of kubernetes-models
const dtsCache = new Map();
function parseDts(file) {
  if (dtsCache.has(file)) return dtsCache.get(file);
  let result = null;
  if (fs.existsSync(file)) {
    const text = fs.readFileSync(file, "utf8").replace(/\/\*\*[\s\S]*?\*\//g, "");
    const imports = new Map();
    for (const m of text.matchAll(/^import \{ (\w+) \} from "([^"]+)";$/gm)) {
      const spec = m[2];
      const target = spec.startsWith(".")
        ? path.join(path.dirname(file), spec + ".d.ts")
        : path.join(NODE_MODULES, spec + ".d.ts");
      imports.set(m[1], target);
    }
    const body = text.match(/^export interface \w+(?: extends [\w, ]+)? \{\n([\s\S]*?)^\}/m);
    if (body) {
      const props = new Map();
      // a property is one line ("name"?: Type;) or a map over several ("name"?: {...};)
      const flat = body[1].replace(/\{\n\s*(\[key: string\]: [^;]+;)\n\s*\}/g, "{ $1 }");
      for (const p of flat.matchAll(/^\s+"([^"]+)"\??: (.+);$/gm)) props.set(p[1], p[2]);
      result = { props, imports };
    }
  }
  dtsCache.set(file, result);
  return result;
}

function checkFields(value, dtsFile, where) {
  const t = parseDts(dtsFile);
  if (t === null || value === null || typeof value !== "object" || Array.isArray(value)) return;
  for (const [key, v] of Object.entries(value)) {
    if (!t.props.has(key)) {
      err(where, `unknown field "${key}"`);
      continue;
    }
    const type = t.props.get(key);
    const refs = [...type.matchAll(/IIoK8s\w+/g)].map((m) => m[0]);
    if (refs.length !== 1 || !t.imports.has(refs[0])) continue;
    const sub = t.imports.get(refs[0]);
    if (/^Array<IIoK8s\w+>$/.test(type)) {
      if (Array.isArray(v)) v.forEach((item, i) => checkFields(item, sub, `${where}.${key}[${i}]`));
    } else if (/^\{ \[key: string\]: IIoK8s\w+; \}$/.test(type)) {
      if (v && typeof v === "object") for (const [k2, v2] of Object.entries(v)) checkFields(v2, sub, `${where}.${key}.${k2}`);
    } else if (/^IIoK8s\w+$/.test(type)) {
      checkFields(v, sub, `${where}.${key}`);
    }
  }
}

function modelPath(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : [null, apiVersion];
  return path.join(MODELS, ...(group ? [group, version] : [version]), kind);
}

async function checkSchema(obj, where) {
  const base = modelPath(obj.apiVersion, obj.kind);
  if (!fs.existsSync(base + ".mjs")) {
    err(where, `no schema for ${obj.apiVersion} ${obj.kind}`);
    return;
  }
  const mod = await import(base + ".mjs");
  const Model = mod[obj.kind];
  try {
    new Model(obj).validate();
  } catch (e) {
    err(where, `schema: ${e.message}`);
  }
  checkFields(obj, base + ".d.ts", where);
}

// ---- reading the tree
function parseYaml(file, root) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"), { uniqueKeys: true, prettyErrors: false });
  const out = [];
  for (const d of docs) {
    for (const e of [...d.errors, ...d.warnings]) err(rel(root, file), `YAML: ${e.message}`);
    const v = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

function yamlFiles(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.name === "node_modules" || e.name.startsWith(".")) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(e.name)) out.push(p);
  }
  return out;
}

function runCheck(file, root) {
  const name = path.basename(file);
  const bin = name.startsWith("agent") ? process.env.SIGIL_AGENT_BIN : process.env.SIGIL_SERVER_BIN;
  const prog = name.startsWith("agent") ? "sigil-agent" : "sigil-server";
  if (!bin) return err(rel(root, file), `no ${prog} binary to check it with`);
  const r = spawnSync(bin, ["run", "--check-config", "--config", file], { encoding: "utf8" });
  if (r.status !== 0) err(rel(root, file), `${prog} run --check-config (exit ${r.status}): ${(r.stderr || r.stdout).trim()}`);
  return r.status === 0;
}

// ---- rules for pods
function podTemplate(obj) {
  if (obj.kind === "Pod") return { meta: obj.metadata ?? {}, spec: obj.spec ?? {} };
  const t = obj.kind === "Job" ? obj.spec?.template : obj.spec?.template;
  return t ? { meta: t.metadata ?? {}, spec: t.spec ?? {} } : null;
}

function checkPod(obj, ns, where, ctx) {
  const pt = podTemplate(obj);
  if (!pt) return err(where, "no pod template");
  const { meta, spec } = pt;
  const id = `${ns}/${obj.metadata.name}`;
  const rootReason = meta.annotations?.["sigil.dev/runs-as-root"];
  if (spec.automountServiceAccountToken !== false) err(where, "automountServiceAccountToken must be false (no pod calls the Kubernetes API)");
  if (!spec.serviceAccountName) err(where, "no serviceAccountName (the default one is not ours to use)");
  else ctx.need(where, "ServiceAccount", ns, spec.serviceAccountName);
  if (spec.hostNetwork) err(where, "hostNetwork is not allowed");
  if (spec.hostIPC) err(where, "hostIPC is not allowed");
  if (spec.hostPID && !HOST_PID.has(id)) err(where, "hostPID is allowed for the agent only");
  const podSec = spec.securityContext ?? {};
  const sel = obj.spec?.selector?.matchLabels;
  if (sel && obj.kind !== "Pod") {
    for (const [k, v] of Object.entries(sel)) if (meta.labels?.[k] !== v) err(where, `selector ${k}=${v} does not match the pod template's labels`);
  }
  const volumes = new Map((spec.volumes ?? []).map((v) => [v.name, v]));
  for (const v of spec.volumes ?? []) {
    if (v.configMap) ctx.need(`${where}: volume ${v.name}`, "ConfigMap", ns, v.configMap.name);
    if (v.secret) ctx.need(`${where}: volume ${v.name}`, "Secret", ns, v.secret.secretName);
    if (v.persistentVolumeClaim) ctx.need(`${where}: volume ${v.name}`, "PersistentVolumeClaim", ns, v.persistentVolumeClaim.claimName);
    if (v.hostPath && !HOST_PATHS.has(v.hostPath.path)) err(`${where}: volume ${v.name}`, `hostPath ${v.hostPath.path} is not one of ${[...HOST_PATHS.keys()].join(", ")}`);
    if (v.emptyDir && !v.emptyDir.sizeLimit) err(`${where}: volume ${v.name}`, "an emptyDir needs a sizeLimit");
  }
  for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
    const cw = `${where}: container ${c.name}`;
    const sc = c.securityContext ?? {};
    if (!c.image) err(cw, "no image");
    for (const k of ["requests", "limits"]) for (const r of ["cpu", "memory"]) {
      if (!c.resources?.[k]?.[r]) err(cw, `resources.${k}.${r} is missing`);
    }
    if (sc.allowPrivilegeEscalation !== false) err(cw, "securityContext.allowPrivilegeEscalation must be false");
    if (sc.readOnlyRootFilesystem !== true) err(cw, "securityContext.readOnlyRootFilesystem must be true");
    if (sc.privileged) err(cw, "privileged is not allowed");
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) err(cw, "securityContext.capabilities.drop must include ALL");
    const allowed = CAP_ADD.get(`${id}/${c.name}`) ?? [];
    for (const cap of sc.capabilities?.add ?? []) if (!allowed.includes(cap)) err(cw, `capability ${cap} may not be added`);
    const nonRoot = sc.runAsNonRoot ?? podSec.runAsNonRoot;
    if (nonRoot !== true && !rootReason) err(cw, "runAsNonRoot must be true (or the pod template says why not: annotation sigil.dev/runs-as-root)");
    if (nonRoot === true && (sc.runAsUser ?? podSec.runAsUser) === 0) err(cw, "runAsNonRoot with runAsUser 0");
    const seccomp = sc.seccompProfile?.type ?? podSec.seccompProfile?.type;
    if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost") err(cw, "seccompProfile must be RuntimeDefault (or Localhost)");
    if (!(spec.initContainers ?? []).includes(c)) {
      if (!c.livenessProbe) err(cw, "no livenessProbe");
      if (!c.readinessProbe) err(cw, "no readinessProbe");
    }
    for (const e of c.env ?? []) {
      if (e.valueFrom?.configMapKeyRef) ctx.need(cw, "ConfigMap", ns, e.valueFrom.configMapKeyRef.name, e.valueFrom.configMapKeyRef.key);
      if (e.valueFrom?.secretKeyRef) ctx.need(cw, "Secret", ns, e.valueFrom.secretKeyRef.name);
    }
    for (const e of c.envFrom ?? []) {
      if (e.configMapRef) ctx.need(cw, "ConfigMap", ns, e.configMapRef.name);
      if (e.secretRef) ctx.need(cw, "Secret", ns, e.secretRef.name);
    }
    for (const m of c.volumeMounts ?? []) {
      const v = volumes.get(m.name);
      if (!v) err(cw, `volumeMount ${m.name}: no such volume`);
      else if (v.hostPath && !HOST_PID.has(id) && m.readOnly !== true) err(cw, `hostPath ${v.hostPath.path} must be mounted readOnly by a workload`);
    }
    // --config PATH must be a mounted config file; remember it for the config checks
    const argv = [...(c.command ?? []), ...(c.args ?? [])];
    const at = argv.indexOf("--config");
    if (at >= 0) {
      const file = argv[at + 1];
      let found = null;
      for (const m of c.volumeMounts ?? []) {
        const v = volumes.get(m.name);
        if (!v?.configMap) continue;
        if (m.subPath && m.mountPath === file) found = { cm: v.configMap.name, key: m.subPath };
        else if (!m.subPath && path.posix.dirname(file) === m.mountPath) found = { cm: v.configMap.name, key: path.posix.basename(file) };
      }
      if (!found) err(cw, `--config ${file} is not a file of a mounted ConfigMap`);
      else ctx.need(`${cw}: --config ${file}`, "ConfigMap", ns, found.cm, found.key);
    }
    ctx.containers.push({ id, c, volumes, where: cw, ns, labels: meta.labels ?? {} });
  }
}

// ---- one kustomization directory
async function checkKustomization(dir, root, ctx) {
  const kfile = path.join(dir, "kustomization.yaml");
  const [k] = parseYaml(kfile, root);
  const kw = rel(root, kfile);
  if (!k) return err(kw, "empty");
  for (const key of Object.keys(k)) if (!KUSTOMIZATION_KEYS.has(key)) err(kw, `unknown field "${key}"`);
  if (k.kind !== "Kustomization") err(kw, "kind must be Kustomization");
  const listed = new Set((k.resources ?? []).map((r) => path.join(dir, r)));
  for (const r of listed) if (!fs.existsSync(r)) err(kw, `resource ${rel(root, r)} does not exist`);
  for (const f of fs.readdirSync(dir)) {
    const p = path.join(dir, f);
    if (/\.ya?ml$/.test(f) && f !== "kustomization.yaml" && fs.statSync(p).isFile() && !listed.has(p)) {
      err(kw, `${rel(root, p)} is not listed in resources`);
    }
  }
  for (const g of k.configMapGenerator ?? []) {
    const ns = g.namespace ?? k.namespace ?? "default";
    const keys = new Map();
    for (const spec of g.files ?? []) {
      const [key, file] = spec.includes("=") ? spec.split("=") : [path.basename(spec), spec];
      const full = path.join(dir, file);
      if (!fs.existsSync(full)) {
        err(kw, `configMapGenerator ${g.name}: ${file} does not exist`);
        continue;
      }
      ctx.usedConfigs.add(full);
      keys.set(key, full);
    }
    ctx.define("ConfigMap", ns, g.name, keys, kw);
  }
  for (const r of listed) {
    if (!fs.existsSync(r)) continue;
    for (const obj of parseYaml(r, root)) {
      const ns = obj.kind === "Namespace" ? null : obj.metadata?.namespace ?? k.namespace ?? "default";
      const where = `${rel(root, r)}: ${obj.kind}/${obj.metadata?.name}`;
      if (!obj.apiVersion || !obj.kind || !obj.metadata?.name) {
        err(where, "apiVersion, kind and metadata.name are required");
        continue;
      }
      await checkSchema(obj, where);
      if (ns !== null) ctx.need(where, "Namespace", null, ns);
      const keys = obj.kind === "ConfigMap" ? new Map(Object.keys(obj.data ?? {}).map((x) => [x, null])) : null;
      ctx.define(obj.kind, ns, obj.metadata.name, keys, where, obj);
      if (WORKLOAD_KINDS.has(obj.kind)) checkPod(obj, ns, where, ctx);
      if (obj.kind === "ServiceAccount" && obj.automountServiceAccountToken !== false) {
        err(where, "automountServiceAccountToken must be false (no pod calls the Kubernetes API)");
      }
    }
  }
}

async function main() {
  const root = path.resolve(process.argv[2] ?? HERE);
  const objects = new Map();
  const needs = [];
  const ctx = {
    containers: [],
    usedConfigs: new Set(),
    define(kind, ns, name, keys, where, obj = null) {
      const key = `${kind}/${ns ?? ""}/${name}`.replace("//", "/");
      if (objects.has(key)) err(where, `${kind} ${name} is defined twice`);
      objects.set(key, { keys, obj });
    },
    need(where, kind, ns, name, key = null) {
      needs.push({ where, kind, ns, name, key });
    },
  };
  const dirs = yamlFiles(root).filter((f) => path.basename(f) === "kustomization.yaml").map(path.dirname).sort();
  if (!dirs.includes(root)) err(rel(root, root), "no kustomization.yaml");
  for (const d of dirs) await checkKustomization(d, root, ctx);

  // every YAML file belongs to a kustomization (as a resource) or is a generated config
  const covered = new Set();
  for (const d of dirs) for (const f of fs.readdirSync(d)) covered.add(path.join(d, f));
  for (const f of yamlFiles(root)) {
    const inConfig = path.basename(path.dirname(f)) === "config";
    if (inConfig) {
      if (!ctx.usedConfigs.has(f)) err(rel(root, f), "no configMapGenerator uses this config");
    } else if (!covered.has(f)) err(rel(root, f), "in no kustomization's directory");
  }

  for (const n of needs) {
    const key = `${n.kind}/${n.ns ?? ""}/${n.name}`.replace("//", "/");
    const o = objects.get(key);
    if (!o) {
      if (!EXTERNAL.has(key)) err(n.where, `${n.kind} ${n.ns ? n.ns + "/" : ""}${n.name} does not exist`);
    } else if (n.key && o.keys && !o.keys.has(n.key)) {
      err(n.where, `ConfigMap ${n.name} has no key ${n.key}`);
    }
  }

  // Services select pods and name their ports
  for (const [key, { obj }] of objects) {
    if (!key.startsWith("Service/")) continue;
    const ns = obj.metadata.namespace;
    const sel = obj.spec?.selector ?? {};
    const pods = ctx.containers.filter((x) => x.ns === ns && Object.entries(sel).every(([k, v]) => x.labels[k] === v));
    const where = `Service ${ns}/${obj.metadata.name}`;
    if (pods.length === 0) err(where, "selects no pod");
    for (const p of obj.spec?.ports ?? []) {
      if (typeof p.targetPort === "string" && !pods.some((x) => (x.c.ports ?? []).some((cp) => cp.name === p.targetPort))) {
        err(where, `targetPort ${p.targetPort} is no container port of the selected pods`);
      }
    }
  }

  // the sigil configs: check mode of the real binaries, then what the manifests rely on
  for (const f of [...ctx.usedConfigs].sort()) {
    if (!runCheck(f, root)) continue;
    if (!path.basename(f).startsWith("agent")) continue;
    const cfg = YAML.parse(fs.readFileSync(f, "utf8"));
    const addr = String(cfg.server_address ?? "");
    const services = [...objects.values()].filter((o) => o.obj?.kind === "Service").map((o) => o.obj);
    const hasPort = (svc, port) => (svc.spec?.ports ?? []).some((p) => p.port === port);
    const ip = addr.match(/^(\d+\.\d+\.\d+\.\d+):(\d+)$/);
    const dns = addr.match(/^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.[a-z0-9.-]+?)?\.?:(\d+)$/);
    if (ip) {
      if (!services.some((s) => s.spec?.clusterIP === ip[1] && hasPort(s, Number(ip[2]))))
        err(rel(root, f), `server_address ${addr} is not the clusterIP:port of a Service`);
    } else if (dns) {
      const [, name, ns, , port] = dns;
      const svc = services.find((s) => s.metadata?.name === name && s.metadata?.namespace === ns);
      if (!svc) err(rel(root, f), `server_address ${addr}: there is no Service ${ns}/${name}`);
      else if (!hasPort(svc, Number(port))) err(rel(root, f), `server_address ${addr}: Service ${ns}/${name} has no port ${port}`);
    } else {
      err(rel(root, f), `server_address ${addr} is not <service>.<namespace>.svc:<port> (or a Service's clusterIP:port)`);
    }
    const sockDir = path.posix.dirname(cfg.workload_api?.socket_path ?? "/run/sigil/agent/public/api.sock");
    const agents = ctx.containers.filter((x) => (x.c.command ?? []).some((a) => a.endsWith("sigil-agent")) && (x.c.command ?? []).includes("run"));
    for (const a of agents) {
      const mount = (a.c.volumeMounts ?? []).find((mm) => mm.mountPath === sockDir);
      const v = mount && a.volumes.get(mount.name);
      if (!v?.hostPath) err(a.where, `the Workload API directory ${sockDir} is not a hostPath mount`);
      else ctx.agentSocketHostPath = v.hostPath.path;
    }
  }
  // workloads reach the socket the agent serves
  for (const x of ctx.containers) {
    const env = (x.c.env ?? []).find((e) => e.name === "SPIFFE_ENDPOINT_SOCKET");
    if (!env) continue;
    const sock = String(env.value ?? "").replace(/^unix:\/\//, "");
    const mount = (x.c.volumeMounts ?? []).find((mm) => mm.mountPath === path.posix.dirname(sock));
    const v = mount && x.volumes.get(mount.name);
    if (!v?.hostPath || (ctx.agentSocketHostPath && v.hostPath.path !== ctx.agentSocketHostPath)) {
      err(x.where, `SPIFFE_ENDPOINT_SOCKET ${env.value} is not in the agent's socket directory ${ctx.agentSocketHostPath ?? "?"}`);
    }
  }

  const nobj = [...objects.values()].filter((o) => o.obj).length;
  for (const e of errors) console.log(`error: ${e}`);
  console.log(`validate: ${dirs.length} kustomizations, ${nobj} objects, ${ctx.containers.length} containers, ` +
    `${ctx.usedConfigs.size} sigil configs: ${errors.length} errors`);
  process.exit(errors.length ? 1 : 0);
}

main().catch((e) => {
  console.error(`validate: ${e.stack || e}`);
  process.exit(2);
});
