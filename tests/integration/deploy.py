"""The Kubernetes deployment ships the repository's pipeline: deploy/kubernetes/configmap.yaml is
what gen-configmap.py writes from scripts/ and ddl/ (every event script and every DDL file,
ddl/error_records.sql of dead_letter.format = "dataflow" included, as they are now), and the
Deployment projects each of its keys back to its path."""
import os
import subprocess

import yaml

import run as local
from run import check, check_eq

CASES = []
KUBE = os.path.join(local.ROOT, "deploy", "kubernetes")


def case(fn):
    CASES.append(fn)
    return fn


def scripts_volume_items():
    with open(os.path.join(KUBE, "deployment.yaml"), encoding="utf-8") as f:
        dep = next(d for d in yaml.safe_load_all(f) if d and d.get("kind") == "Deployment")
    vols = dep["spec"]["template"]["spec"]["volumes"]
    return next(v for v in vols if "configMap" in v)["configMap"]["items"]


@case
def configmap_is_the_shipped_scripts_and_ddl():
    p = subprocess.run(["python3", os.path.join(KUBE, "gen-configmap.py"),
                        os.path.join(local.ROOT, "scripts"), os.path.join(local.ROOT, "ddl")],
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "gen-configmap.py: " + p.stderr)
    with open(os.path.join(KUBE, "configmap.yaml"), encoding="utf-8") as f:
        cm = yaml.safe_load(f)
    want = yaml.safe_load(p.stdout)
    check("ddl.error_records.sql" in want["data"], "ddl/error_records.sql is generated")
    check_eq(sorted(cm["data"]), sorted(want["data"]), "configmap.yaml's keys vs scripts/ and ddl/")
    stale = [k for k in want["data"] if cm["data"][k] != want["data"][k]]
    check_eq(stale, [], "configmap.yaml keys older than scripts/ and ddl/ (run gen-configmap.py)")
    check_eq(scripts_volume_items(), yaml.safe_load(p.stderr),
             "deployment.yaml's items vs gen-configmap.py's")
