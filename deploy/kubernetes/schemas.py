#!/usr/bin/env python3
"""Writes standalone JSON schemas of Kubernetes kinds, for check-jsonschema to validate the
manifests of deploy/kubernetes/ offline.

    schemas.py VERSION OUT_DIR NAME...     # e.g. schemas.py 1.30.0 /tmp/k8s job-batch-v1 pod-v1

The PyPI package kubernetes-validate ships, for each Kubernetes version, a strict JSON schema
per kind (unknown fields refused) whose "$ref"s point into a shared _definitions.json under
a URL (https://kubernetes.io/api/...) that check-jsonschema would try to download. This
script writes OUT_DIR/NAME.json for each NAME: the kind's schema with every definition it
needs copied under "$defs" and each "$ref" pointed there, so the file stands alone.
Needs kubernetes-validate in the running Python (scripts/setup.sh installs it in .venv).

Exit status: 0 written, 2 bad usage, an unknown version or kind, or no kubernetes-validate.
"""

import json
import os
import sys

# A "$ref" into _definitions.json: from a kind's schema, and from one definition to another.
LOCAL = "#/$defs/"
PREFIXES = ("/api/_definitions.json" + LOCAL, LOCAL)


def schema_dir(version):
    """The folder of kubernetes-validate's strict schemas for VERSION."""
    import kubernetes_validate

    root = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
    return os.path.join(root, "v%s-local-strict" % version)


def rewrite(node, needed):
    """NODE with its "$ref"s pointing under the "$defs" of the schema written; the names of
    the definitions they point to added to NEEDED."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(PREFIXES):
                name = value.split("/$defs/", 1)[1]
                needed.add(name)
                out[key] = LOCAL + name
            else:
                out[key] = rewrite(value, needed)
        return out
    if isinstance(node, list):
        return [rewrite(item, needed) for item in node]
    return node


def standalone(folder, name, definitions):
    """The schema NAME of FOLDER with the definitions it reaches, transitively."""
    with open(os.path.join(folder, name + ".json"), encoding="utf-8") as f:
        schema = json.load(f)
    schema.pop("$id", None)
    needed = set()
    schema = rewrite(schema, needed)
    defs = {}
    todo = list(needed)
    while todo:
        current = todo.pop()
        if current in defs:
            continue
        more = set()
        defs[current] = rewrite(definitions[current], more)
        todo.extend(more - defs.keys())
    schema["$defs"] = defs
    return schema


def main(argv):
    if len(argv) < 4:
        print(__doc__.strip().splitlines()[3].strip(), file=sys.stderr)
        return 2
    version, out_dir, names = argv[1], argv[2], argv[3:]
    try:
        folder = schema_dir(version)
    except ImportError:
        print("schemas.py: kubernetes-validate is not installed (scripts/setup.sh)", file=sys.stderr)
        return 2
    try:
        with open(os.path.join(folder, "_definitions.json"), encoding="utf-8") as f:
            definitions = json.load(f)["$defs"]
        os.makedirs(out_dir, exist_ok=True)
        for name in names:
            schema = standalone(folder, name, definitions)
            with open(os.path.join(out_dir, name + ".json"), "w", encoding="utf-8") as f:
                json.dump(schema, f, indent=1, sort_keys=True)
    except (OSError, KeyError, ValueError) as e:
        print("schemas.py: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
