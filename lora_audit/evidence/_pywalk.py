"""How a notebook's Python is read, statement by statement, without running it (used by ``notebook``).

``_Walker`` follows a cell's statements in order: literal assignments into the ``Env`` (``_pyliteral``), ``if`` on
known values (both branches, their names then unknown, when not), loops over known values unrolled (else one pass
with the item unknown), the notebook's own functions read where they are called (parameters bound, locals put
back), ``open(path, "w")`` + ``toml.dump``/``f.write(toml.dumps(...))`` as files the notebook creates, and
``subprocess``/``os.system`` calls and ``!`` lines handed to the session's shell reader.
"""

from __future__ import annotations

import ast
import posixpath
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit

from lora_audit.evidence._pyliteral import (CALL_HOOK, UNKNOWN_VALUE, Env, TomlText, Unknown, bind, evaluate,
                                            iterate)
from lora_audit.model import Evidence, Note


_SUBPROCESS = {"subprocess.run", "subprocess.call", "subprocess.check_call", "subprocess.check_output",
               "subprocess.Popen", "sp.run", "sp.call", "sp.Popen"}
# Statements read per notebook (loops over known values are unrolled): past it, the rest is not read.
_STEP_BUDGET = 50_000


class _OverBudget(Exception):
    pass


_TRAINING_HINT = re.compile(r"train\w*\.py|fine_tune\.py|accelerate\s+launch")


@dataclass
class _Shell:
    """A shell command found in a cell: its text (lines kept) and where it starts."""

    text: str
    line: int  # line in the cell (1-based)
    words: list[str] | None = None  # a subprocess list: already words
    unknown: list[str] = field(default_factory=list)  # expressions of a subprocess list left as {expr}


@dataclass
class Session:
    """What persists from cell to cell: Python variables, the environment, files written, the evidence found."""

    label: str
    path: Path
    tmp: Path
    env: Env = field(default_factory=Env)
    files: dict[str, Path] = field(default_factory=dict)  # created file (as named, and by base name) -> tmp copy
    file_sources: dict[str, dict[str, str]] = field(default_factory=dict)  # tmp path -> key -> notebook source
    out: list[Evidence] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    # notebook functions without parameters: name -> (definition, cell label, first line, its cell's ! lines)
    functions: dict[str, tuple[Any, str, int, dict]] = field(default_factory=dict)
    calling: list[str] = field(default_factory=list)
    loops: int = 0  # inside a loop's body
    texts: dict[str, str] = field(default_factory=dict)  # unknown variable -> the expression that sets it
    used: set[str] = field(default_factory=set)  # created files a read command includes
    unread: list[str] = field(default_factory=list)  # sources of training commands built at run time
    scripts: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # written .sh: text, cell, first line
    steps: int = 0
    file_lines: dict[str, tuple[str, int]] = field(default_factory=dict)  # %%writefile tmp -> cell, first line
    walked: set[int] = field(default_factory=set)  # calls of notebook functions that were read
    nodes: dict[str, Any] = field(default_factory=dict)  # unknown variable -> the expression that sets it
    # reads one shell command (notebook._shell): (session, command, cell label, first line, conditional)
    shell: Callable[..., None] = lambda *a, **k: None

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class _Walker:
    def __init__(self, s: Session, label: str, first_line: int, shells: dict[int, _Shell]):
        self.s, self.label, self.first, self.shells = s, label, first_line, shells
        self.open_files: dict[str, str] = {}  # `with open(path, "w") as f`: f -> path

    def src(self, node: ast.AST) -> str:
        return f"{self.label}:{getattr(node, 'lineno', 1) + self.first - 1}"

    def value(self, node: ast.AST) -> Any:
        token = CALL_HOOK.set(self._call_value)
        try:
            return evaluate(node, self.s.env, self.label, self.first - 1)
        finally:
            CALL_HOOK.reset(token)

    def _call_value(self, name: str, c: ast.Call) -> Any:
        """The value of a notebook function called in an expression: its body read (side effects included) up to
        a ``return`` at its top level. Unknown when it returns from inside a branch or a loop."""
        if name not in self.s.functions or name in self.s.calling or len(self.s.calling) >= 8:
            raise Unknown(name)
        node, label, first, shells = self.s.functions[name]
        self.s.walked.add(id(c))
        self.s.calling.append(name)
        saved = self._bind(node, c)
        try:
            w = _Walker(self.s, label, first, shells)
            for st in node.body:
                if isinstance(st, ast.Return):
                    if st.value is None:
                        return None
                    v = w.value(st.value)
                    return v
                w.stmt(st, False)
            return None
        finally:
            self.s.calling.pop()
            self._restore(saved)

    def block(self, body: list[ast.stmt], conditional: bool) -> None:
        for st in body:
            self.stmt(st, conditional)

    def stmt(self, st: ast.stmt, conditional: bool) -> None:
        env = self.s.env
        self.s.steps += 1
        if self.s.steps > _STEP_BUDGET:
            raise _OverBudget()
        calls = self._header_calls(st)
        try:
            self._stmt(st, conditional)
        finally:
            # a notebook function called in an expression that was not read (its value was not needed or could
            # not be had): the globals it sets are unknown, never left at their earlier value
            for c in calls:
                if id(c) not in self.s.walked:
                    for n in self._globals_set(_dotted(c.func) or "", set()):
                        self.s.env.forget(n)

    def _stmt(self, st: ast.stmt, conditional: bool) -> None:
        env = self.s.env
        if isinstance(st, ast.Pass) and st.lineno in self.shells:
            sh = self.shells[st.lineno]
            self.s.shell(self.s, sh, self.label, self.first, conditional)
        elif isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name) and \
                _open_for_write(st.value, self) is not None:
            self.open_files[st.targets[0].id] = _open_for_write(st.value, self) or ""  # f = open(path, "w")
            env.forget(st.targets[0].id)
        elif isinstance(st, (ast.Assign, ast.AnnAssign)) and st.value is not None:
            targets = st.targets if isinstance(st, ast.Assign) else [st.target]
            if isinstance(st.value, ast.Call) and _is_launch(st.value):
                self.call(st.value, conditional)  # process = subprocess.Popen(cmd, ...)
            try:
                v = self.value(st.value)
            except Unknown:
                v = UNKNOWN_VALUE
            for t in targets:
                self.assign(t, v, st, conditional)
        elif isinstance(st, ast.AugAssign) and isinstance(st.target, ast.Name):
            try:
                v = self.value(ast.BinOp(left=ast.Name(id=st.target.id, ctx=ast.Load()), op=st.op, right=st.value))
            except Unknown:
                v = UNKNOWN_VALUE
            self.assign(st.target, v, st, conditional)
        elif isinstance(st, ast.If):
            try:
                taken = bool(self.value(st.test))
            except Unknown:
                self.block(st.body, True)
                self.block(st.orelse, True)
                return
            self.block(st.body if taken else st.orelse, conditional)
        elif isinstance(st, ast.With):
            for item in st.items:
                path = _open_for_write(item.context_expr, self)
                if isinstance(item.optional_vars, ast.Name):
                    if path is not None:
                        self.open_files[item.optional_vars.id] = path
                    else:  # a file whose path is not known (or not opened for writing): not the earlier one
                        self.open_files.pop(item.optional_vars.id, None)
            self.block(st.body, conditional)
        elif isinstance(st, ast.Try):
            self.block(st.body, conditional)
        elif isinstance(st, ast.For) and self._unroll(st, conditional):
            pass
        elif isinstance(st, ast.Delete):
            for t in st.targets:
                if isinstance(t, ast.Subscript):
                    try:
                        container, key = self.value(t.value), self.value(t.slice)
                    except Unknown:
                        continue
                    if isinstance(container, dict) and not conditional:
                        container.pop(key, None)
        elif isinstance(st, (ast.For, ast.While, ast.AsyncFor)):
            # one pass of the body with the loop variable unknown: what an iteration trains with, as far as it does
            # not depend on the item (a value that does stays unknown); every name the loop sets is forgotten first
            for node in ast.walk(st):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    env.forget(node.id)
            self.s.loops += 1
            try:
                self.block(st.body, conditional)
            finally:
                self.s.loops -= 1
        elif isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # a notebook's main()/create_config()/write_file(path, text): read when a cell calls it, in the cell
            # that defines it
            env.forget(st.name)
            self.s.functions[st.name] = (st, self.label, self.first, self.shells)
        elif isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            env.forget(st.name)
        elif isinstance(st, ast.Expr) and isinstance(st.value, ast.Call):
            self.call(st.value, conditional)

    def assign(self, target: ast.expr, v: Any, st: ast.stmt, conditional: bool) -> None:
        env = self.s.env
        if isinstance(target, ast.Name):
            if v is UNKNOWN_VALUE or conditional:
                env.forget(target.id)
                if isinstance(st, (ast.Assign, ast.AnnAssign)) and st.value is not None:
                    self.s.nodes[target.id] = st.value
                self.s.texts[target.id] = ast.unparse(st.value)[:4000] if hasattr(st, "value") else ""
            else:
                _inherit_sources(env, env.values.get(target.id), v)
                env.set(target.id, v, self.src(st))
        elif isinstance(target, ast.Subscript):
            name = _dotted(target.value)
            try:
                key = self.value(target.slice)
            except Unknown:
                return
            if name == "os.environ" and isinstance(key, str):
                if isinstance(v, str) and not conditional:
                    env.environ[key] = v
                else:
                    env.environ.pop(key, None)
            else:
                try:
                    d = self.value(target.value)  # the live dict (config["general"]["x"] = ...)
                except Unknown:
                    return
                if isinstance(d, dict):
                    _inherit_sources(env, d.get(key), v)
                    d[key] = v if not conditional else UNKNOWN_VALUE
                    if id(d) not in env.key_sources:
                        env.sources_of(d, {})
                    env.key_sources[id(d)][str(key)] = self.src(st)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                self.assign(t, v[target.elts.index(t)] if isinstance(v, (list, tuple)) and len(v) == len(
                    target.elts) else UNKNOWN_VALUE, st, conditional)

    def call(self, c: ast.Call, conditional: bool) -> None:
        name = _dotted(c.func) or ""
        if name.endswith(".update") and len(c.args) == 1 and not conditional:
            try:
                target, other = self.value(c.func.value), self.value(c.args[0])  # type: ignore[attr-defined]
            except Unknown:
                target = other = None
            if isinstance(target, dict) and isinstance(other, dict):
                target.update(other)
                env_src = self.s.env.key_sources
                if id(target) not in env_src:
                    self.s.env.sources_of(target, {})
                env_src[id(target)].update(env_src.get(id(other), {}))
                return
        if name in self.s.functions and name not in self.s.calling and len(self.s.calling) < 8:
            # the function's body as if written here, its parameters bound to the call's values and its local
            # names put back afterwards (an early `return` on a failed check is not followed: the training command
            # is read on the path where the notebook goes on)
            node, label, first, shells = self.s.functions[name]
            self.s.walked.add(id(c))
            self.s.calling.append(name)
            saved = self._bind(node, c)
            try:
                _Walker(self.s, label, first, shells).block(node.body, conditional)
            finally:
                self.s.calling.pop()
                self._restore(saved)
            return
        if name in ("toml.dump", "tomlkit.dump", "tomli_w.dump", "rtoml.dump") and len(c.args) >= 2:
            f = _dotted(c.args[1])
            if f in self.open_files:
                self.write_config(c.args[0], self.open_files[f], c)
        elif name.endswith(".write") and c.args and name[:-len(".write")] in self.open_files:
            # f.write(toml.dumps(config)), or f.write(text) where text = toml.dumps(config) earlier
            f = self.open_files[name[:-len(".write")]]
            try:
                v = self.value(c.args[0])
            except Unknown:
                return
            if isinstance(v, TomlText):
                self.write_config(v.data, f, c)
            elif isinstance(v, str) and f.endswith((".sh", ".bash")):
                # a shell script the notebook writes and then runs (`!./train.sh`): its text, lines from the line
                # that sets it (an f"""...""" starting on that line)
                arg = c.args[0]
                src = self.s.env.sources.get(arg.id) if isinstance(arg, ast.Name) else None
                line = int(src.rsplit(":", 1)[1]) if src else c.lineno + self.first - 1
                self.s.scripts[posixpath.basename(f)] = (v, self.label, line)
        elif name in _SUBPROCESS or name in ("os.system", "get_ipython.system") or name.endswith(".system"):
            if not c.args:
                return
            try:
                arg = self.value(c.args[0])
            except Unknown:
                node = c.args[0]
                if isinstance(node, ast.Name) and isinstance(self.s.nodes.get(node.id), (ast.List, ast.Tuple)):
                    node = self.s.nodes[node.id]
                if isinstance(node, (ast.List, ast.Tuple)) and not any(isinstance(e, ast.Starred) for e in node.elts):
                    # a command list with a few run-time parts: those parts unknown, the rest read
                    unknown: list[str] = []
                    words = [self.partial(e, unknown) for e in node.elts]
                    self.s.shell(self.s, _Shell("", c.lineno, words, unknown), self.label, self.first, conditional)
                    return
                if _TRAINING_HINT.search(ast.unparse(c.args[0])):
                    self.s.notes.append(Note(message="a training command built at run time: not read (only "
                                                     "literal commands are)", source=self.src(c)))
                return
            if isinstance(arg, (list, tuple)) and all(isinstance(a, (str, int, float)) for a in arg):
                words = [str(a) for a in arg]
                self.s.shell(self.s, _Shell("", c.lineno, words), self.label, self.first, conditional)
            elif isinstance(arg, str):
                self.s.shell(self.s, _Shell(arg, c.lineno), self.label, self.first, conditional)

    def partial(self, node: ast.expr, unknown: list[str]) -> str:
        """A string expression's text with the parts only known at run time written as ``{expr}``."""
        try:
            return str(self.value(node))
        except Unknown:
            pass
        if isinstance(node, ast.JoinedStr):
            out = []
            for part in node.values:
                if isinstance(part, ast.Constant):
                    out.append(str(part.value))
                elif isinstance(part, ast.FormattedValue):
                    out.append(self.partial(part.value, unknown))
            return "".join(out)
        expr = ast.unparse(node)
        unknown.append(expr)
        return "{" + expr + "}"

    def _unroll(self, st: ast.For, conditional: bool) -> bool:
        """A ``for`` over a value the notebook knows (a config dict's keys, a literal list): each pass in turn."""
        try:
            items = iterate(self.value(st.iter))
        except Unknown:
            return False
        for item in items:
            try:
                bind(st.target, item, self.s.env, self.src(st))
            except Unknown:
                return False
            self.block(st.body, conditional)
        return True

    def _header_calls(self, st: ast.stmt) -> list[ast.Call]:
        """Calls of notebook functions in a statement's own expressions (not in the statements it holds)."""
        if isinstance(st, (ast.If, ast.While)):
            exprs: list[ast.AST] = [st.test]
        elif isinstance(st, (ast.For, ast.AsyncFor)):
            exprs = [st.iter]
        elif isinstance(st, ast.With):
            exprs = [i.context_expr for i in st.items]
        elif isinstance(st, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Return)) and st.value is not None:
            exprs = [st.value]
        else:
            exprs = []
        return [n for e in exprs for n in ast.walk(e)
                if isinstance(n, ast.Call) and (_dotted(n.func) or "") in self.s.functions]

    def _globals_set(self, name: str, seen: set[str]) -> set[str]:
        if name in seen or name not in self.s.functions:
            return set()
        seen.add(name)
        fn = self.s.functions[name][0]
        declared = {n for st in ast.walk(fn) if isinstance(st, ast.Global) for n in st.names}
        out = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)} & declared
        for node in ast.walk(fn):
            if isinstance(node, ast.Call):
                out |= self._globals_set(_dotted(node.func) or "", seen)
        return out

    def _bind(self, fn: ast.FunctionDef | ast.AsyncFunctionDef, c: ast.Call) -> dict[str, tuple]:
        env = self.s.env
        declared = {n for st in ast.walk(fn) if isinstance(st, (ast.Global, ast.Nonlocal)) for n in st.names}
        params = [a.arg for a in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]]
        local = set(params) | {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        local -= declared
        saved = {n: (n in env.values, env.values.get(n), env.sources.get(n), n in env.assigned) for n in local}
        positional = [*fn.args.posonlyargs, *fn.args.args]
        defaults = dict(zip([a.arg for a in positional[len(positional) - len(fn.args.defaults):]], fn.args.defaults))
        defaults.update({a.arg: d for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults) if d is not None})
        given: dict[str, ast.expr] = {a.arg: v for a, v in zip(positional, c.args)}
        given.update({k.arg: k.value for k in c.keywords if k.arg})
        for n in params:
            expr = given.get(n, defaults.get(n))
            try:
                if expr is None or any(isinstance(a, ast.Starred) for a in c.args):
                    raise Unknown(n)
                env.set(n, self.value(expr), self.src(c))
            except Unknown:
                env.forget(n)
        return saved

    def _restore(self, saved: dict[str, tuple]) -> None:
        env = self.s.env
        for n, (had, value, source, assigned) in saved.items():
            env.values.pop(n, None)
            env.sources.pop(n, None)
            if had:
                env.values[n] = value
                if source is not None:
                    env.sources[n] = source
            if not assigned:
                env.assigned.discard(n)

    def write_config(self, node: ast.expr | dict, path_node: str, call: ast.Call) -> None:
        env = self.s.env
        try:
            data = node if isinstance(node, dict) else self.value(node)
        except Unknown:
            self.s.notes.append(Note(message=f"{path_node}: a config written from values known only at run time; "
                                             "not read", source=self.src(call)))
            return
        if not isinstance(data, dict):
            return
        sources: dict[str, str] = {}
        dropped: list[str] = []

        def clean(d: dict) -> dict:
            out: dict = {}
            for k, v in d.items():
                key_src = env.key_sources.get(id(d), {}).get(str(k))
                if v is UNKNOWN_VALUE:
                    dropped.append(str(k))
                    continue
                if v is None:
                    continue  # toml.dump leaves None values out
                if isinstance(v, dict):
                    out[str(k)] = clean(v)
                elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                    out[str(k)] = [clean(x) for x in v]
                else:
                    out[str(k)] = v
                if key_src:
                    sources.setdefault(str(k), key_src)
            return out

        try:
            text = tomlkit.dumps(clean(data))
        except Exception:  # a value TOML cannot hold (a set, bytes): such a file would not be written either
            return
        tmp = self.s.tmp / f"{len(self.s.files)}-{Path(path_node).name or 'config.toml'}"
        tmp.write_text(text, encoding="utf-8")
        self.s.files[path_node] = tmp
        self.s.files.setdefault(Path(path_node).name, tmp)
        if path_node.startswith("{"):
            self.s.files[path_node + ".toml"] = tmp  # read_config_from_file appends .toml to a name without it
        self.s.file_sources[str(tmp)] = sources
        if dropped:
            self.s.notes.append(Note(message=f"{path_node}: values known only at run time left out: "
                                             + ", ".join(dropped), source=self.src(call)))


def _inherit_sources(env: Env, old: Any, new: Any) -> None:
    """``d = {k: v for k, v in d.items() if v is not None}``: the filtered dict keeps the lines of the keys it keeps."""
    if isinstance(old, dict) and isinstance(new, dict) and id(new) not in env.key_sources:
        env.sources_of(new, dict(env.key_sources.get(id(old), {})))


def _is_launch(c: ast.Call) -> bool:
    name = _dotted(c.func) or ""
    return name in _SUBPROCESS or name in ("os.system", "get_ipython.system") or name.endswith(".system")


def _open_for_write(node: ast.expr, w: _Walker) -> str | None:
    if not (isinstance(node, ast.Call) and _dotted(node.func) in ("open", "io.open") and node.args):
        return None
    try:
        path = w.value(node.args[0])
        mode = w.value(node.args[1]) if len(node.args) > 1 else next(
            (w.value(k.value) for k in node.keywords if k.arg == "mode"), "r")
    except Unknown:
        # a path known only at run time: the file is known by its expression, as a command names it ({config_file})
        try:
            mode = w.value(node.args[1]) if len(node.args) > 1 else "r"
        except Unknown:
            return None
        return "{" + ast.unparse(node.args[0]) + "}" if isinstance(mode, str) and "w" in mode else None
    return path if isinstance(path, str) and isinstance(mode, str) and "w" in mode else None


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Call):  # get_ipython().system
        inner = _dotted(node.func)
        return ".".join([inner, *reversed(parts)]) if inner else None
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None
