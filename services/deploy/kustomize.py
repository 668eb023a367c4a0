"""A small Kustomize renderer for deploy/k8s (kustomize itself is not installable here).

It implements exactly the kustomization fields deploy/k8s uses, with kustomize's semantics, and
refuses any other field (so an overlay cannot silently use something this renderer ignores):

  resources (files and directories with a kustomization.yaml), namespace, labels (pairs,
  includeSelectors: false, includeTemplates), images (name -> newName/newTag), replicas,
  patches (path: strategic-merge patches, target taken from the patch's kind and name),
  configMapGenerator (files) with generatorOptions.disableNameSuffixHash: true.

Strategic merge: maps merge recursively, lists of maps keyed by `name` (containers, env,
volumes, volumeMounts, ports) merge item by item, other lists are replaced.

    python -m services.deploy.kustomize deploy/k8s/overlays/prod > prod.yaml
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]

SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "images",
    "replicas",
    "patches",
    "configMapGenerator",
    "generatorOptions",
}
# Kinds that live outside namespaces (kustomize leaves them without one).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
# Kinds whose spec.template is a pod template (labels.includeTemplates reaches it).
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not implement, or is inconsistent."""


def _load_docs(path: Path) -> list[Manifest]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _key(m: Manifest) -> tuple[str, str]:
    return (str(m["kind"]), str(m["metadata"]["name"]))


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge of `patch` into `base` (the subset kustomize applies to built-in kinds)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in [*base, *patch])
    ):
        merged = [copy.deepcopy(i) for i in base]
        index = {i["name"]: n for n, i in enumerate(merged)}
        for item in patch:
            if item["name"] in index:
                merged[index[item["name"]]] = merge(merged[index[item["name"]]], item)
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def _set_image(image: str, rules: list[dict[str, str]]) -> str:
    name, _, tag = image.partition(":")
    for rule in rules:
        if rule["name"] == name:
            return f"{rule.get('newName', name)}:{rule.get('newTag', tag or 'latest')}"
    return image


def _pod_specs(m: Manifest) -> list[dict[str, Any]]:
    if m["kind"] in WORKLOADS:
        return [m["spec"]["template"]["spec"]]
    return []


def build(directory: Path) -> list[Manifest]:
    """Render the kustomization in `directory` to a list of manifests."""
    kfile = directory / "kustomization.yaml"
    if not kfile.exists():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    k: dict[str, Any] = yaml.safe_load(kfile.read_text()) or {}
    unknown = set(k) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{kfile}: fields not implemented here: {sorted(unknown)}")

    out: list[Manifest] = []
    for res in k.get("resources", []):
        path = (directory / res).resolve()
        out += build(path) if path.is_dir() else _load_docs(path)

    options = k.get("generatorOptions", {})
    for gen in k.get("configMapGenerator", []):
        if not options.get("disableNameSuffixHash"):
            raise KustomizeError(f"{kfile}: name-suffix hashes are not implemented (disable them)")
        if set(gen) - {"name", "files"}:
            raise KustomizeError(f"{kfile}: configMapGenerator supports name and files only")
        data = {Path(f).name: (directory / f).read_text() for f in gen.get("files", [])}
        out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})

    by_key = {_key(m): n for n, m in enumerate(out)}
    if len(by_key) != len(out):
        raise KustomizeError(f"{kfile}: two resources share a kind and name")

    for entry in k.get("patches", []):
        if set(entry) != {"path"}:
            raise KustomizeError(f"{kfile}: only `path:` strategic-merge patches are implemented")
        for patch in _load_docs(directory / entry["path"]):
            n = by_key.get(_key(patch))
            if n is None:
                raise KustomizeError(f"{kfile}: patch target {_key(patch)} not found")
            out[n] = merge(out[n], patch)

    for entry in k.get("replicas", []):
        hits = [m for m in out if m["kind"] in WORKLOADS and m["metadata"]["name"] == entry["name"]]
        if not hits:
            raise KustomizeError(f"{kfile}: replicas for unknown workload {entry['name']}")
        for m in hits:
            m["spec"]["replicas"] = int(entry["count"])

    rules = k.get("images", [])
    for m in out:
        for spec in _pod_specs(m):
            for c in [*spec.get("containers", []), *spec.get("initContainers", [])]:
                c["image"] = _set_image(c["image"], rules)

    for entry in k.get("labels", []):
        if entry.get("includeSelectors"):
            raise KustomizeError(f"{kfile}: labels with includeSelectors are not implemented")
        pairs = {str(a): str(b) for a, b in entry["pairs"].items()}
        for m in out:
            m["metadata"].setdefault("labels", {}).update(pairs)
            if entry.get("includeTemplates") and m["kind"] in WORKLOADS:
                m["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {}).update(pairs)

    if "namespace" in k:
        for m in out:
            if m["kind"] not in CLUSTER_SCOPED:
                m["metadata"]["namespace"] = k["namespace"]
    return out


def dump(manifests: list[Manifest]) -> str:
    return "".join("---\n" + yaml.safe_dump(m, sort_keys=False) for m in manifests)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m services.deploy.kustomize DIR", file=sys.stderr)
        return 2
    sys.stdout.write(dump(build(Path(args[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
