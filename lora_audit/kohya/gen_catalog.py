"""Generate lora_audit/kohya/data/catalog.json from an sd-scripts checkout.

Reads the ``add_argument`` calls reachable from ``setup_parser()`` of every training script (``SCRIPTS``: the
LoRA trainers ``*_train_network.py`` and the full fine-tunes) with :mod:`ast` (nothing of sd-scripts is imported,
so no torch; nothing is copied), and writes, for every argument: its dest name, option strings, type, default,
choices, nargs, action, help, where it is defined, and which scripts accept it. Where one argument is defined
differently by two scripts (another default or help), ``per_script`` holds what differs.

Helper calls are followed with their literal arguments bound, so ``if support_dreambooth:`` inside
``train_util.add_training_arguments(parser, False)`` is decided as argparse would see it (``fine_tune.py`` has no
``--prior_loss_weight``).

Usage: python -m lora_audit.kohya.gen_catalog PATH/TO/sd-scripts [--commit SHA]
       [--out lora_audit/kohya/data/catalog.json]
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

from lora_audit.errors import EvidenceError

# LoRA (network) trainers first, then the full fine-tunes; each script's architecture is in kohya/trainers.py.
SCRIPTS = [
    "train_network.py", "sdxl_train_network.py", "flux_train_network.py", "sd3_train_network.py",
    "lumina_train_network.py", "hunyuan_image_train_network.py", "anima_train_network.py",
    "train_db.py", "fine_tune.py", "sdxl_train.py", "flux_train.py", "sd3_train.py", "lumina_train.py",
    "anima_train.py",
]
# fields that may differ between two scripts' definitions of one argument
_VARYING = ("flags", "action", "type", "default", "default_expr", "choices", "nargs", "help", "defined_in")


class _Module:
    def __init__(self, root: Path, path: Path):
        self.root = root
        self.path = path
        with warnings.catch_warnings():  # sd-scripts' sources have invalid escapes ("\(") Python warns about
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            self.tree = ast.parse(path.read_text(encoding="utf-8"))
        self.functions = {n.name: n for n in self.tree.body if isinstance(n, ast.FunctionDef)}
        self.constants: dict[str, object] = {}
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                with contextlib.suppress(Exception):  # not a literal: not a constant we can bind
                    self.constants[node.targets[0].id] = ast.literal_eval(node.value)
        # name -> module file, name -> (module file, function name)
        self.module_aliases: dict[str, Path] = {}
        self.function_aliases: dict[str, tuple[Path, str]] = {}
        for imp in ast.walk(self.tree):
            if isinstance(imp, ast.Import):
                for a in imp.names:
                    f = self._file_for(a.name)
                    if f:
                        self.module_aliases[a.asname or a.name] = f
            elif isinstance(imp, ast.ImportFrom) and imp.module:
                for a in imp.names:
                    sub = self._file_for(f"{imp.module}.{a.name}")
                    if sub:
                        self.module_aliases[a.asname or a.name] = sub
                        continue
                    f = self._file_for(imp.module)
                    if f:
                        self.function_aliases[a.asname or a.name] = (f, a.name)

    def _file_for(self, dotted: str) -> Path | None:
        f = self.root / (dotted.replace(".", "/") + ".py")
        return f if f.exists() else None


def _bind(fn: ast.FunctionDef, call: ast.Call, caller: _Module, caller_bindings: dict) -> dict:
    """The literal values a call passes to ``fn``'s parameters (its own literal defaults for the rest)."""
    params = [a.arg for a in fn.args.args]
    out: dict = {}
    defaults = fn.args.defaults
    for p, d in zip(params[len(params) - len(defaults):], defaults):
        with contextlib.suppress(Exception):
            out[p] = ast.literal_eval(d)
    for p, a in zip(params, call.args):
        value = _value(a, caller, caller_bindings)
        if value is not _UNKNOWN:
            out[p] = value
        else:
            out.pop(p, None)
    for k in call.keywords:
        if k.arg:
            value = _value(k.value, caller, caller_bindings)
            if value is not _UNKNOWN:
                out[k.arg] = value
            else:
                out.pop(k.arg, None)
    return out


_UNKNOWN = object()


def _value(node: ast.AST, module: _Module, bindings: dict):
    if isinstance(node, ast.Name) and node.id in bindings:
        return bindings[node.id]
    try:
        return ast.literal_eval(node)
    except Exception:
        return _UNKNOWN


def _decide(test: ast.AST, bindings: dict) -> bool | None:
    """True/False when an ``if`` test depends only on bound parameters (``if support_dreambooth:``), else None."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _decide(test.operand, bindings)
        return None if inner is None else not inner
    if isinstance(test, ast.Name) and test.id in bindings:
        return bool(bindings[test.id])
    if isinstance(test, ast.BoolOp):
        values = [_decide(v, bindings) for v in test.values]
        if isinstance(test.op, ast.And):
            return False if False in values else (None if None in values else True)
        return True if True in values else (None if None in values else False)
    return None


class _Walker(ast.NodeVisitor):
    """Visits a function body: add_argument calls, calls of other helpers, and ``if``s decided by bindings."""

    def __init__(self, collector: _Collector, module: _Module, seen: set, bindings: dict):
        self.c, self.module, self.seen, self.bindings = collector, module, seen, bindings

    def visit_body(self, stmts: list[ast.stmt]) -> None:
        for st in stmts:
            self.visit(st)

    def visit_If(self, node: ast.If) -> None:
        decided = _decide(node.test, self.bindings)
        if decided is None:
            self.generic_visit(node)
        else:
            self.visit_body(node.body if decided else node.orelse)

    def visit_Call(self, node: ast.Call) -> None:
        self.c.call(self.module, node, self.seen, self.bindings)
        self.generic_visit(node)


def _literal(node: ast.AST, module: _Module):
    try:
        return ast.literal_eval(node), True
    except Exception:
        pass
    if isinstance(node, ast.Name) and node.id in module.constants:
        return module.constants[node.id], True
    return ast.unparse(node), False


class _Collector:
    def __init__(self, root: Path):
        self.root = root
        self.modules: dict[Path, _Module] = {}
        self.args: dict[str, dict] = {}

    def module(self, path: Path) -> _Module:
        if path not in self.modules:
            self.modules[path] = _Module(self.root, path)
        return self.modules[path]

    def walk_function(self, module: _Module, name: str, seen: set, bindings: dict | None = None):
        bindings = bindings or {}
        key = (module.path, name, tuple(sorted((k, repr(v)) for k, v in bindings.items())))
        if key in seen or name not in module.functions:
            return
        seen.add(key)
        fn = module.functions[name]
        _Walker(self, module, seen, bindings).visit_body(fn.body)

    def call(self, module: _Module, node: ast.Call, seen: set, bindings: dict):
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "add_argument":
            self.add_argument(module, node)
            return
        target: tuple[_Module, str] | None = None
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            path = module.module_aliases.get(f.value.id)
            if path:
                target = (self.module(path), f.attr)
        elif isinstance(f, ast.Name):
            if f.id in module.functions:
                target = (module, f.id)
            elif f.id in module.function_aliases:
                path, fname = module.function_aliases[f.id]
                target = (self.module(path), fname)
        if target and target[1] in target[0].functions:
            self.walk_function(target[0], target[1], seen, _bind(target[0].functions[target[1]], node, module,
                                                                 bindings))

    def add_argument(self, module: _Module, call: ast.Call):
        flags = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if not flags or not flags[0].startswith("-"):
            return
        kw = {k.arg: k.value for k in call.keywords if k.arg}
        long_flags = [f for f in flags if f.startswith("--")]
        dest = (_literal(kw["dest"], module)[0] if "dest" in kw
                else (long_flags or flags)[0].lstrip("-").replace("-", "_"))
        action = _literal(kw["action"], module)[0] if "action" in kw else "store"
        entry = {
            "name": dest,
            "flags": flags,
            "action": action,
            "type": None,
            "default": None,
            "default_expr": None,
            "choices": None,
            "nargs": None,
            "help": None,
            "defined_in": f"{module.path.relative_to(self.root).as_posix()}:{call.lineno}",
        }
        if "type" in kw:
            entry["type"] = ast.unparse(kw["type"])
        if action == "store_true":
            entry["default"] = False
        elif action == "store_false":
            entry["default"] = True
        if "default" in kw:
            value, ok = _literal(kw["default"], module)
            if ok:
                entry["default"] = value
            else:
                entry["default_expr"] = value
        if "choices" in kw:
            value, ok = _literal(kw["choices"], module)
            entry["choices"] = value if ok else None
        if "nargs" in kw:
            entry["nargs"] = _literal(kw["nargs"], module)[0]
        if "help" in kw:
            h, ok = _literal(kw["help"], module)
            if ok and isinstance(h, str):
                entry["help"] = h.split(" / ")[0].strip()
        self.args[dest] = entry


def dataset_schema(root: Path) -> dict:
    """The dataset TOML schema of library/config_util.py: ConfigSanitizer's *_SCHEMA dicts and the *Params defaults."""
    tree = ast.parse((root / "library/config_util.py").read_text(encoding="utf-8"))
    schemas: dict[str, dict[str, str]] = {}
    defaults: dict[str, dict[str, object]] = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for node in cls.body:
            if cls.name == "ConfigSanitizer" and isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                name = node.targets[0].id if isinstance(node.targets[0], ast.Name) else None
                if not name or not name.endswith("_SCHEMA"):
                    continue
                group: dict[str, str] = {}
                for k, v in zip(node.value.keys, node.value.values, strict=True):
                    if isinstance(k, ast.Call):  # Required("image_dir")
                        k = k.args[0]
                    if isinstance(k, ast.Constant) and isinstance(k.value, str):
                        t = ast.unparse(v)
                        if "twodim" in t:
                            t = ("scalar_or_pair:" if "scalar" in t else "pair:") + t.split(",")[-1].strip(" )")
                        group[k.value] = t
                schemas[name] = group
            elif (cls.name.endswith("Params") and isinstance(node, ast.AnnAssign)
                  and isinstance(node.target, ast.Name) and node.value is not None):
                try:
                    value = ast.literal_eval(node.value)
                except Exception:
                    continue
                if isinstance(value, tuple) and len(value) == 1:  # `x: str = (",",)` is a tuple in kohya's source
                    value = value[0]
                defaults.setdefault(cls.name, {})[node.target.id] = value
    return {"schemas": schemas, "defaults": defaults}


def _git(cwd: Path, *args: str) -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None


def checkout_commit(root: Path) -> str | None:
    """The sd-scripts commit the folder ``root`` holds, or None when git cannot say.

    ``git -C root rev-parse HEAD`` alone is wrong for a folder that is not the top of its own repository: in an
    uninitialised submodule, or a copy of sd-scripts inside another repository, git finds the *parent* repository
    and answers with its HEAD. So: root's own HEAD when root is the top of a work tree (a clone, an initialised
    submodule); else the commit the parent repository pins root at (the submodule's gitlink); else None."""
    root = root.resolve()
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None:
        return None
    if Path(top).resolve() == root:
        return _git(root, "rev-parse", "HEAD")
    line = _git(Path(top), "ls-tree", "HEAD", "--", root.relative_to(Path(top).resolve()).as_posix())
    fields = line.split() if line else []
    # "160000 commit <sha>\t<path>": a gitlink; a "tree" is a plain folder of the parent, no commit of sd-scripts
    return fields[2] if len(fields) >= 3 and fields[1] == "commit" else None


def build_catalog(root: Path) -> dict:
    per_script: dict[str, dict[str, dict]] = {}
    for script in SCRIPTS:
        if not (root / script).exists():
            continue
        c = _Collector(root)
        c.walk_function(c.module(root / script), "setup_parser", set())
        per_script[script] = c.args
    merged: dict[str, dict] = {}
    for script, args in per_script.items():
        for name, entry in args.items():
            item = merged.setdefault(name, dict(entry, scripts=[]))
            item["scripts"].append(script)
            differs = {k: entry[k] for k in _VARYING if entry[k] != item[k]}
            if differs:
                item.setdefault("per_script", {})[script] = differs
    if not per_script:
        raise EvidenceError("no sd-scripts training script here (an uninitialised submodule? run: git submodule "
                            "update --init sd-scripts)", root)
    return {
        "generator": "python -m lora_audit.kohya.gen_catalog",
        "sd_scripts_commit": checkout_commit(root),
        "scripts": list(per_script),
        "arguments": dict(sorted(merged.items())),
        "dataset_config": dataset_schema(root),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sd_scripts", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data" / "catalog.json")
    ap.add_argument("--commit", help="sd-scripts commit to record (when the checkout is not a git work tree)")
    a = ap.parse_args(argv)
    try:
        cat = build_catalog(a.sd_scripts)
    except EvidenceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.commit:
        cat["sd_scripts_commit"] = a.commit
    elif cat["sd_scripts_commit"] is None:
        print(f"warning: {a.sd_scripts}: not a git checkout of sd-scripts, no commit recorded (give --commit SHA)",
              file=sys.stderr)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(cat, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"{len(cat['arguments'])} arguments from {', '.join(cat['scripts'])} -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
