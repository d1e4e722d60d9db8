"""Packaging and deployment: luarocks make and make install give a binary that
runs from its tree with no environment; the man page covers every flag, option key, signal and
environment variable and renders without warnings; the Dockerfile, systemd unit and Kubernetes
manifests agree on the ports, paths and packages."""
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile

import yaml

import run as local
from run import check, check_eq

CASES = []
PORT = 9464
MAN = os.path.join(local.ROOT, "doc", "bepipe-lua.1")
DEPLOY = os.path.join(local.ROOT, "deploy")
# what the Makefile compiles in as BP_LIB_DIR: the tests prove the binary does not need it
BUILT_FOR = "/usr/local/share/bepipe-lua/lua"


def case(fn):
    CASES.append(fn)
    return fn


def sh(args, cwd=None, env=None, timeout=120):
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def check_clean_env(binary, pipeline):
    """--check with no environment at all (no LUA_PATH, BEPIPE_LIB_DIR, HOME, PATH), from /."""
    check(not os.path.exists(os.path.join(BUILT_FOR, "bepipe", "host.lua")),
          f"{BUILT_FOR} exists on this machine: the test could not tell where the library came from")
    rc, out = sh([binary, "--check", pipeline], cwd="/", env={})
    check(rc == 0 and ": ok (" in out, f"{binary} --check {pipeline} with no environment: {out}")


def copy_source(dst):
    """What a release tarball holds: the build inputs, not the checkout's build/ or binary."""
    for name in ("Makefile", "bepipe-lua-scm-1.rockspec"):
        shutil.copy2(os.path.join(local.ROOT, name), dst)
    for name in ("runtime", "proto", "scripts", "ddl", "doc"):
        shutil.copytree(os.path.join(local.ROOT, name), os.path.join(dst, name))


@case
def luarocks_make_into_a_tree_runs_with_no_environment():
    with tempfile.TemporaryDirectory() as tmp:
        src, tree = os.path.join(tmp, "src"), os.path.join(tmp, "tree")
        os.mkdir(src)
        copy_source(src)
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp}
        rc, out = sh(["luarocks", "--lua-version=5.1", f"--tree={tree}", "make"], cwd=src,
                     env=env, timeout=300)
        check(rc == 0, "luarocks make: " + out[-3000:])
        shutil.rmtree(src)  # the installed binary must not lean on the build folder
        binary = os.path.join(tree, "bin", "bepipe-lua")
        check(os.access(binary, os.X_OK), "luarocks put no bin/bepipe-lua in the tree")
        data = os.path.join(tree, "share", "lua", "5.1", "bepipe-lua")
        check_clean_env(binary, os.path.join(data, "scripts", "pipeline.lua"))
        # a user's own copy of the shipped scripts, outside the tree
        mine = os.path.join(tmp, "mine")
        shutil.copytree(os.path.join(data, "scripts"), mine)
        shutil.copytree(os.path.join(data, "ddl"), os.path.join(mine, "ddl"))
        check_clean_env(binary, os.path.join(mine, "pipeline.lua"))
        rc, out = sh(["luarocks", f"--tree={tree}", "list", "--porcelain"], env=env)
        check(rc == 0 and "bepipe-lua\tscm-1" in out, "luarocks list: " + out)


@case
def make_install_destdir_then_uninstall():
    with tempfile.TemporaryDirectory() as dest:
        rc, out = sh(["make", "-s", "-C", local.ROOT, "install", "PREFIX=/usr", "DESTDIR=" + dest])
        check(rc == 0, "make install: " + out[-3000:])
        usr = os.path.join(dest, "usr")
        for rel in ("bin/bepipe-lua", "share/bepipe-lua/lua/bepipe/host.lua",
                    "share/bepipe-lua/lua/bepipe/check.lua", "share/bepipe-lua/scripts/pipeline.lua",
                    "share/bepipe-lua/scripts/events/order.lua",
                    "share/bepipe-lua/ddl/rejected_events.sql", "share/man/man1/bepipe-lua.1"):
            check(os.path.isfile(os.path.join(usr, rel)), "make install left out " + rel)
        shipped = sorted(os.path.basename(p) for p in glob.glob(os.path.join(local.ROOT, "ddl", "*.sql")))
        check_eq(sorted(os.listdir(os.path.join(usr, "share/bepipe-lua/ddl"))), shipped, "installed ddl")
        check(os.access(os.path.join(usr, "bin/bepipe-lua"), os.X_OK), "installed binary not executable")
        check_clean_env(os.path.join(usr, "bin/bepipe-lua"),
                        os.path.join(usr, "share/bepipe-lua/scripts/pipeline.lua"))
        rc, out = sh(["make", "-s", "-C", local.ROOT, "uninstall", "PREFIX=/usr", "DESTDIR=" + dest])
        check(rc == 0, "make uninstall: " + out)
        left = [os.path.join(d, f) for d, _, fs in os.walk(dest) for f in fs]
        check(not left, f"make uninstall left {left}")


@case
def checkout_binaries_find_scripts():
    # make test's uses: the checkout root's binary, and one two folders down like build/asan/
    pipeline = os.path.join(local.ROOT, "scripts", "pipeline.lua")
    check_clean_env(os.path.join(local.ROOT, "bepipe-lua"), pipeline)
    probe = os.path.join(local.ROOT, "build", "ops-packaging-probe")
    os.makedirs(probe, exist_ok=True)
    try:
        shutil.copy2(local.BIN, probe)
        check_clean_env(os.path.join(probe, os.path.basename(local.BIN)), pipeline)
    finally:
        shutil.rmtree(probe)
    # precedence: from a bin/ the installed ../share/bepipe-lua/lua wins over any scripts/; a
    # binary outside a bin/ (a checkout whose parent has a share/) keeps its own scripts/
    with tempfile.TemporaryDirectory() as tmp:
        marked = os.path.join(tmp, "share", "bepipe-lua", "lua", "bepipe")
        os.makedirs(marked)
        with open(os.path.join(marked, "host.lua"), "w", encoding="utf-8") as f:
            f.write('error("the installed library was used")\n')
        for sub in ("bin", "checkout"):
            os.makedirs(os.path.join(tmp, sub))
            shutil.copy2(local.BIN, os.path.join(tmp, sub, "bepipe-lua"))
            shutil.copytree(os.path.join(local.ROOT, "scripts"), os.path.join(tmp, sub, "scripts"))
        # a pipeline folder without bepipe/ (its own folder comes first on the module path)
        mine = os.path.join(tmp, "mine")
        shutil.copytree(os.path.join(local.ROOT, "scripts"), mine, ignore=shutil.ignore_patterns("bepipe"))
        shutil.copytree(os.path.join(local.ROOT, "ddl"), os.path.join(mine, "ddl"))
        pipeline = os.path.join(mine, "pipeline.lua")
        rc, out = sh([os.path.join(tmp, "bin", "bepipe-lua"), "--check", pipeline], env={})
        check(rc != 0 and "the installed library was used" in out, "from bin/: " + out)
        check_clean_env(os.path.join(tmp, "checkout", "bepipe-lua"), pipeline)


def man_text():
    """The man page's source with the roff escapes of hyphens and fonts taken out."""
    with open(MAN, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"\\f[BIRP]|\\&|\\%", "", text).replace("\\-", "-")
    return text.replace("\\(dq", '"').replace("\\e", "\\")


def help_flags_and_keys():
    rc, out = sh([local.BIN, "--help"])
    check_eq(rc, 0, "--help exit code")
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9_-]*|-h)\b", out))
    keys, in_keys = set(), False
    for line in out.splitlines():
        if line.startswith("options (pipeline.lua keys"):
            in_keys = True
        elif in_keys and re.match(r"  \S", line):
            keys.add(line.split()[0])
    check(len(flags) > 10 and len(keys) > 20, f"could not read --help: {sorted(flags)} {sorted(keys)}")
    return flags, keys


@case
def man_page_covers_every_flag_key_signal_and_variable():
    text = man_text()
    flags, keys = help_flags_and_keys()
    # each flag and key has an entry of its own: the tag line of a .TP paragraph
    lines = text.splitlines()
    tags = [lines[i + 1] for i, line in enumerate(lines[:-1]) if line.strip() == ".TP"]
    tag_words = {w.strip('",') for t in tags for w in t.split()}
    missing = sorted(flags - tag_words)
    check(not missing, "flags of --help without an entry in the man page: " + " ".join(missing))
    missing = sorted(keys - tag_words)
    check(not missing, "option keys without an entry in the man page: " + " ".join(missing))
    envs = set()
    for path in glob.glob(os.path.join(local.ROOT, "runtime", "*.c")):
        with open(path, encoding="utf-8") as f:
            src = f.read()
        envs |= set(re.findall(r'getenv\("([A-Z0-9_]+)"\)', src))
        envs |= set(re.findall(r'"([A-Z][A-Z0-9]*_[A-Z0-9_]+)", \*\w+ = getenv', src))
        envs |= set(re.findall(r'pick\([^,]+, "([A-Z0-9_]+)"\)', src))
    for var in ("PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST",
                "GOOGLE_APPLICATION_CREDENTIALS", "GCE_METADATA_HOST"):
        check(var in envs, f"{var} not found by the getenv scan: the scan is broken")
    missing = sorted(v for v in envs if v not in text)
    check(not missing, "environment variables read by runtime/ but not in the man page: " + " ".join(missing))
    for section in ("SIGNALS", "EXIT STATUS", "ENVIRONMENT", "FILES", "OPTIONS", "SYNOPSIS"):
        check(re.search(r"^\.SH \"?" + section, text, re.M), "man page has no section " + section)
    for word in ("SIGHUP", "SIGTERM", "SIGINT", "drain_seconds", "/healthz", "/readyz", "/reload"):
        check(word in text, "man page does not mention " + word)
    rc, version = sh([local.BIN, "--version"])
    check(re.search(r'^\.TH BEPIPE-LUA 1 \S+ "' + re.escape(version.strip()) + '"', text, re.M),
          f"the man page's .TH names another version than {version.strip()!r}")
    sigs = text[text.index(".SH SIGNALS"):text.index(".SH EXIT STATUS")]
    check("Reload" in sigs and "Drain" in sigs, "SIGNALS must say SIGHUP reloads and SIGTERM drains")
    status = text[text.index(".SH EXIT STATUS"):text.index(".SH ENVIRONMENT")]
    for code in ("0", "1", "2"):
        check(re.search(r"^\.B " + code + "$", status, re.M), f"EXIT STATUS lacks {code}")


@case
def man_page_defaults_match_help():
    """Each option key's [default] in the man page is the one --help prints (the option table's)."""
    rc, out = sh([local.BIN, "--help"])
    check_eq(rc, 0, "--help exit code")
    helpd, in_keys = {}, False
    for line in out.splitlines():
        if line.startswith("options (pipeline.lua keys"):
            in_keys = True
        elif in_keys and re.match(r"  \S", line):
            m = re.search(r"\[([^\]]*)\]\s*$", line)
            if m:
                helpd[line.split()[0]] = m.group(1)
    check(len(helpd) > 20, f"could not read the defaults of --help: {helpd}")
    text = man_text()
    wrong, compared = [], 0
    for key, default in sorted(helpd.items()):
        m = re.search(r"^\.TP\n\.B " + re.escape(key) + r"\n(.*?)(?=^\.(?:TP|SH|SS|PP)\b)", text,
                      re.M | re.S)
        if not m:
            continue   # man_page_covers_every_flag_key_signal_and_variable names missing keys
        compared += 1
        found = re.findall(r"\[([^\]]*)\]", m.group(1))
        if not found or found[-1] != default:
            wrong.append(f"{key}: --help [{default}], man page {found[-1:] or 'none'}")
    check(compared * 10 >= len(helpd) * 9, f"only {compared} of {len(helpd)} keys found in the man page")
    check(not wrong, "man page defaults differ from --help: " + "; ".join(wrong))


@case
def man_page_renders_without_warnings():
    rc, out = sh(["groff", "-man", "-ww", "-z", MAN])
    check(rc == 0 and out == "", "groff -ww warns: " + out)
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MANPAGER="cat")
    p = subprocess.run(["man", "-l", MAN], env=env, capture_output=True, text=True, timeout=60)
    check(p.returncode == 0 and p.stderr == "", "man -l warns: " + p.stderr)
    for want in ("SYNOPSIS", "EXIT STATUS", "--http ADDR:PORT", "SIGHUP"):
        check(want in p.stdout, f"the rendered page lacks {want!r}")


def load_manifests():
    docs = []
    for path in sorted(glob.glob(os.path.join(DEPLOY, "kubernetes", "*.yaml"))):
        if path.endswith("kustomization.yaml"):
            continue
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                check(isinstance(doc, dict), f"{path}: a document that is not a mapping")
                docs.append(doc)
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    return docs, by_kind


def one(by_kind, kind):
    check(len(by_kind.get(kind, [])) == 1, f"want exactly one {kind} in deploy/kubernetes")
    return by_kind[kind][0]


def probe_port(container, probe):
    port = probe["httpGet"]["port"]
    if isinstance(port, str):  # a named port
        port = next(p["containerPort"] for p in container["ports"] if p.get("name") == port)
    return port


def arg_value(args, flag):
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a[len(flag) + 1:]
    return None


def drain_seconds(args):
    v = [a.split("=", 1)[1] for i, a in enumerate(args)
         if i > 0 and args[i - 1] == "--set" and a.startswith("drain_seconds=")]
    return int(v[-1]) if v else 30


@case
def kubernetes_manifests_agree_on_ports_paths_and_identity():
    docs, by_kind = load_manifests()
    ns = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    check_eq(ns, {one(by_kind, "Namespace")["metadata"]["name"]}, "namespaces")
    dep = one(by_kind, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    check_eq(dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items(),
             True, "selector matches the pod labels")
    c = pod["containers"][0]
    args = c["args"]
    check_eq(arg_value(args, "--http"), f"0.0.0.0:{PORT}", "--http of the container")
    check(any(p["containerPort"] == PORT for p in c["ports"]), "containerPort 9464")
    check_eq((c["livenessProbe"]["httpGet"]["path"], probe_port(c, c["livenessProbe"])),
             ("/healthz", PORT), "liveness probe")
    check_eq((c["readinessProbe"]["httpGet"]["path"], probe_port(c, c["readinessProbe"])),
             ("/readyz", PORT), "readiness probe")
    check(pod["terminationGracePeriodSeconds"] > drain_seconds(args),
          "terminationGracePeriodSeconds must exceed drain_seconds")
    res = c["resources"]
    check("cpu" in res["requests"] and "memory" in res["requests"] and "memory" in res["limits"],
          "resources: requests cpu+memory, a memory limit")
    sc = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
    check(sc.get("runAsNonRoot") and sc.get("allowPrivilegeEscalation") is False, "non-root pod")
    # the pipeline the args name lies in the ConfigMap volume, and every file in it maps back
    pipeline = args[-1]
    mount = next(m for m in c["volumeMounts"] if pipeline.startswith(m["mountPath"].rstrip("/") + "/"))
    vol = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    cm = one(by_kind, "ConfigMap")
    check_eq(vol["configMap"]["name"], cm["metadata"]["name"], "the scripts volume's ConfigMap")
    items = {i["key"]: i["path"] for i in vol["configMap"]["items"]}
    check_eq(sorted(items), sorted(cm["data"]), "ConfigMap keys vs the volume's items")
    check(os.path.relpath(pipeline, mount["mountPath"]) in items.values(), "pipeline.lua not projected")
    with tempfile.TemporaryDirectory() as tmp:
        for key, path in items.items():
            os.makedirs(os.path.dirname(os.path.join(tmp, path)), exist_ok=True)
            with open(os.path.join(tmp, path), "w", encoding="utf-8") as f:
                f.write(cm["data"][key])
        rc, out = sh([local.BIN, "--check", os.path.join(tmp, os.path.relpath(pipeline, mount["mountPath"]))])
        check(rc == 0, "the ConfigMap's pipeline fails --check: " + out)
        # the generator writes the same keys the Deployment projects
        p = subprocess.run(["python3", os.path.join(DEPLOY, "kubernetes", "gen-configmap.py"), tmp],
                           capture_output=True, text=True, timeout=60)
        check(p.returncode == 0, "gen-configmap.py: " + p.stderr)
        check_eq(yaml.safe_load(p.stdout), cm, "gen-configmap.py of the ConfigMap's own files")
        check_eq(yaml.safe_load(p.stderr), vol["configMap"]["items"], "gen-configmap.py's items")
    sa = one(by_kind, "ServiceAccount")
    check_eq(pod["serviceAccountName"], sa["metadata"]["name"], "the pod's service account")
    gsa = sa["metadata"].get("annotations", {}).get("iam.gke.io/gcp-service-account", "")
    check(gsa.endswith(".iam.gserviceaccount.com"), "Workload Identity annotation: " + gsa)
    svc = one(by_kind, "Service")
    check(any(p["targetPort"] == PORT for p in svc["spec"]["ports"]), "metrics Service port")
    # KEDA: the backlog of the subscription the pods pull, read with the GCP pod identity
    so = one(by_kind, "ScaledObject")
    check_eq(so["apiVersion"], "keda.sh/v1alpha1", "ScaledObject apiVersion")
    check_eq(so["spec"]["scaleTargetRef"]["name"], dep["metadata"]["name"], "scaleTargetRef")
    trig = so["spec"]["triggers"][0]
    check_eq(trig["type"], "gcp-pubsub", "trigger type")
    md = trig["metadata"]
    check_eq(md["subscriptionName"], arg_value(args, "--input_subscription"), "scaled subscription")
    check_eq(md["mode"], "SubscriptionSize", "trigger mode")
    check(isinstance(md["value"], str) and int(md["value"]) > 0, "trigger value: a string number")
    ta = one(by_kind, "TriggerAuthentication")
    check_eq(trig["authenticationRef"]["name"], ta["metadata"]["name"], "authenticationRef")
    check_eq(ta["spec"]["podIdentity"]["provider"], "gcp", "podIdentity provider")
    with open(os.path.join(DEPLOY, "kubernetes", "kustomization.yaml"), encoding="utf-8") as f:
        kust = yaml.safe_load(f)
    listed = sorted(kust["resources"])
    present = sorted(os.path.basename(p) for p in glob.glob(os.path.join(DEPLOY, "kubernetes", "*.yaml"))
                     if not p.endswith("kustomization.yaml"))
    check_eq(listed, present, "kustomization resources")


def unit_settings(path):
    settings = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "[")) and "=" in line:
                k, v = line.split("=", 1)
                settings.setdefault(k, []).append(v)
    return settings


@case
def systemd_unit_reloads_with_hup_and_outlasts_the_drain():
    path = os.path.join(DEPLOY, "systemd", "bepipe-lua.service")
    s = unit_settings(path)
    check_eq(s["Type"], ["simple"], "Type")
    check(any(re.fullmatch(r"/bin/kill -HUP \$MAINPID", v) for v in s["ExecReload"]),
          "ExecReload sends SIGHUP: " + str(s["ExecReload"]))
    check_eq(s["KillSignal"], ["SIGTERM"], "KillSignal")
    check(int(s["TimeoutStopSec"][0]) > 30, "TimeoutStopSec must exceed drain_seconds (30)")
    check_eq(s["Restart"], ["on-failure"], "Restart")
    check(s.get("User") and s["User"][0] != "root", "a dedicated user")
    for k, v in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                 ("ReadWritePaths", "/var/lib/bepipe-lua"), ("StateDirectory", "bepipe-lua")):
        check_eq(s.get(k), [v], k)
    check("MemoryDenyWriteExecute" not in s, "MemoryDenyWriteExecute would break LuaJIT's JIT")
    start = s["ExecStart"][0].split()
    check_eq(arg_value(start, "--http"), f"127.0.0.1:{PORT}", "the unit's --http")
    with open(os.path.join(DEPLOY, "systemd", "bepipe-lua.sysusers"), encoding="utf-8") as f:
        check(re.search(r"^u bepipe-lua ", f.read(), re.M), "sysusers creates the unit's user")
    if shutil.which("systemd-analyze"):
        with tempfile.TemporaryDirectory() as tmp:
            with open(path, encoding="utf-8") as f:
                unit = f.read().replace("/usr/bin/bepipe-lua", os.path.join(local.ROOT, "bepipe-lua"))
            with open(os.path.join(tmp, "bepipe-lua.service"), "w", encoding="utf-8") as f:
                f.write(unit)
            rc, out = sh(["systemd-analyze", "verify", "--man=no", os.path.join(tmp, "bepipe-lua.service")])
            check(rc == 0 and out.strip() == "", "systemd-analyze verify: " + out)


def dockerfile():
    with open(os.path.join(local.ROOT, "Dockerfile"), encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    stages, cur = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            cur = {"from": rest, "lines": []}
            stages.append(cur)
        else:
            cur["lines"].append((word.upper(), rest))
    return stages


def apt_packages(stage):
    pkgs = []
    for word, rest in stage["lines"]:
        if word == "RUN" and "apt-get install" in rest:
            cmd = rest.split("apt-get install", 1)[1].split("&&")[0]
            pkgs += [w for w in cmd.split() if not w.startswith("-")]
    return pkgs


def owning_packages(libs):
    """{library: its Debian packages} for the shared libraries as this machine has them."""
    p = subprocess.run(["dpkg", "-S", *libs], capture_output=True, text=True, timeout=60)
    owners = {}
    for line in p.stdout.splitlines():
        pkgs, _, path = line.partition(": ")
        for lib in libs:
            if path.endswith("/" + lib):
                owners.setdefault(lib, set()).update(x.split(":")[0] for x in pkgs.split(", "))
    return owners


@case
def dockerfile_packages_exist_and_healthcheck_matches():
    stages = dockerfile()
    check_eq(len(stages), 2, "stages (build, runtime)")
    check(all(s["from"].split()[0] == "debian:12-slim" for s in stages), "both stages on debian:12-slim")
    build, rt = apt_packages(stages[0]), apt_packages(stages[1])
    p = subprocess.run(["apt-cache", "show", "--no-all-versions", *build, *rt], capture_output=True,
                       text=True, timeout=60)
    known = set(re.findall(r"^Package: (\S+)$", p.stdout, re.M))
    with open("/etc/debian_version", encoding="utf-8") as f:
        check(f.read().startswith("12"), "apt-cache here must be Debian 12's")
    check(known, "apt-cache knows no package: run apt-get update first")
    missing = [pkg for pkg in build + rt if pkg not in known]
    check(not missing, "not Debian 12 packages: " + " ".join(missing))
    check(not [p for p in rt if p.endswith("-dev") or p in ("build-essential", "make", "gcc")],
          "runtime stage holds build packages: " + " ".join(rt))
    # every library the binary links comes from a runtime package (or the base image's libc)
    rc, out = sh(["readelf", "-d", local.BIN])
    check_eq(rc, 0, "readelf")
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out)
    owners = owning_packages(needed)
    for lib in needed:
        check(owners.get(lib, set()) & (set(rt) | {"libc6", "libgcc-s1"}),
              f"{lib} (from {owners.get(lib) or 'no package'}) is not installed in the runtime stage")
    # the runtime's apt line runs as root before USER; then a non-root user
    users = [rest for w, rest in stages[1]["lines"] if w == "USER"]
    check(users and users[-1].split(":")[0] not in ("root", "0"), "runtime user: " + str(users))
    check(any(w == "VOLUME" and "/etc/bepipe-lua" in rest for w, rest in stages[1]["lines"]),
          "the scripts are a volume at /etc/bepipe-lua")
    health = [rest for w, rest in stages[1]["lines"] if w == "HEALTHCHECK"]
    check(len(health) == 1 and f"http://127.0.0.1:{PORT}/healthz" in health[0], "HEALTHCHECK: " + str(health))
    check("curl" in rt, "HEALTHCHECK uses curl: install it in the runtime stage")
    cmd = [rest for w, rest in stages[1]["lines"] if w == "CMD"]
    check(cmd and f'"--http", "0.0.0.0:{PORT}"' in cmd[0], "CMD serves --http on the probed port")
    check(any(w == "EXPOSE" and rest == str(PORT) for w, rest in stages[1]["lines"]), "EXPOSE 9464")
    # COPY sources exist and are not hidden by .dockerignore
    with open(os.path.join(local.ROOT, ".dockerignore"), encoding="utf-8") as f:
        ignored = {line.strip().rstrip("/") for line in f if line.strip() and not line.startswith("#")}
    for stage in stages:
        for w, rest in stage["lines"]:
            if w != "COPY" or rest.startswith("--from"):
                continue
            for src in rest.split()[:-1]:
                check(os.path.exists(os.path.join(local.ROOT, src)), "COPY source missing: " + src)
                check(src.split("/")[0] not in ignored, ".dockerignore hides " + src)


def docker_copy(src, dst):
    """COPY's rules: a folder's contents into the target folder, a file to the target (or into
    it when the target ends with a slash)."""
    if os.path.isdir(src):
        shutil.copytree(src, dst, dirs_exist_ok=True)
        return
    if dst.endswith("/"):
        os.makedirs(dst, exist_ok=True)
        dst = os.path.join(dst, os.path.basename(src))
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy2(src, dst)


@case
def dockerfile_steps_build_an_image_tree_that_checks():
    """No Docker engine here: replay the Dockerfile's COPY and make steps into folders (the
    apt-get steps are the packages checked above), then --check the CMD's pipeline with the
    image's binary and no environment."""
    stages = dockerfile()
    with tempfile.TemporaryDirectory() as tmp:
        out, root = os.path.join(tmp, "out"), os.path.join(tmp, "root")
        workdir = "/"
        for word, rest in stages[0]["lines"]:
            if word == "WORKDIR":
                workdir = rest
            elif word == "COPY":
                *srcs, dst = rest.split()
                for src in srcs:
                    docker_copy(os.path.join(local.ROOT, src),
                                os.path.join(tmp, "build") + os.path.join(workdir, dst))
            elif word == "RUN" and "apt-get" not in rest:
                cwd = os.path.join(tmp, "build") + workdir
                rc, log = sh(["bash", "-ec", rest.replace("DESTDIR=/out", "DESTDIR=" + out)],
                             cwd=cwd, timeout=300)
                check(rc == 0, f"RUN {rest}: {log[-2000:]}")
        cmd, entry = None, None
        for word, rest in stages[1]["lines"]:
            if word == "COPY" and rest.startswith("--from=build"):
                _, src, dst = rest.split()
                check_eq((src, dst), ("/out/", "/"), "the runtime stage copies the install tree")
                docker_copy(out, root)
            elif word == "COPY":
                *srcs, dst = rest.split()
                for src in srcs:
                    docker_copy(os.path.join(local.ROOT, src), root + dst)
            elif word == "CMD":
                cmd = json.loads(rest)
            elif word == "ENTRYPOINT":
                entry = json.loads(rest)
        check(entry and cmd, "ENTRYPOINT and CMD in exec form")
        binary = root + entry[0]
        check(os.access(binary, os.X_OK), f"{entry[0]} is not in the image tree")
        check_clean_env(binary, root + cmd[-1])
