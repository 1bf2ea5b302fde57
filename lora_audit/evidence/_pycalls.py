"""The calls of a notebook's Python (the second half of ``_pywalk._Walker``): its own functions read where they are
called (parameters bound, locals put back), ``open(path, "w")`` + ``toml.dump`` as files it creates, and
``subprocess``/``os.system`` commands handed to the session's shell reader."""

from __future__ import annotations

import ast
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomlkit

from lora_audit.evidence._pyliteral import UNKNOWN_VALUE, TomlText, Unknown
from lora_audit.evidence._pysession import TRAINING_HINT, Session, Shell, dotted, is_launch_name
from lora_audit.model import Note


class Calls:
    """Mixed into ``_Walker``: everything that follows a call."""

    s: Session
    label: str
    first: int
    shells: dict[int, Shell]
    open_files: dict[str, str]

    if TYPE_CHECKING:
        def __init__(self, s: Session, label: str, first_line: int, shells: dict[int, Shell]) -> None: ...
        def value(self, node: ast.AST) -> Any: ...
        def src(self, node: ast.AST) -> str: ...
        def stmt(self, st: ast.stmt, conditional: bool) -> None: ...
        def block(self, body: list[ast.stmt], conditional: bool) -> None: ...

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
            w = type(self)(self.s, label, first, shells)
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

    def call(self, c: ast.Call, conditional: bool) -> None:
        name = dotted(c.func) or ""
        if name.endswith(".update") and len(c.args) == 1 and not conditional and self._update(c):
            return
        if name in self.s.functions and name not in self.s.calling and len(self.s.calling) < 8:
            self._walk_function(name, c, conditional)
            return
        if name in ("toml.dump", "tomlkit.dump", "tomli_w.dump", "rtoml.dump") and len(c.args) >= 2:
            f = dotted(c.args[1])
            if f in self.open_files:
                self.write_config(c.args[0], self.open_files[f], c)
        elif name.endswith(".write") and c.args and name[:-len(".write")] in self.open_files:
            self._file_write(c, self.open_files[name[:-len(".write")]])
        elif is_launch_name(name) and c.args:
            self._launch(c, conditional)

    def _update(self, c: ast.Call) -> bool:
        """``d.update(other)`` of two known dicts, the key sources carried over; False when not both are known."""
        if not isinstance(c.func, ast.Attribute):  # the caller matched a dotted name ending in .update
            return False
        try:
            target, other = self.value(c.func.value), self.value(c.args[0])
        except Unknown:
            target = other = None
        if not (isinstance(target, dict) and isinstance(other, dict)):
            return False
        target.update(other)
        env_src = self.s.env.key_sources
        if id(target) not in env_src:
            self.s.env.sources_of(target, {})
        env_src[id(target)].update(env_src.get(id(other), {}))
        return True

    def _walk_function(self, name: str, c: ast.Call, conditional: bool) -> None:
        # the function's body as if written here, its parameters bound to the call's values and its local
        # names put back afterwards (an early `return` on a failed check is not followed: the training command
        # is read on the path where the notebook goes on)
        node, label, first, shells = self.s.functions[name]
        self.s.walked.add(id(c))
        self.s.calling.append(name)
        saved = self._bind(node, c)
        try:
            type(self)(self.s, label, first, shells).block(node.body, conditional)
        finally:
            self.s.calling.pop()
            self._restore(saved)

    def _file_write(self, c: ast.Call, f: str) -> None:
        """f.write(toml.dumps(config)), or f.write(text) where text = toml.dumps(config) earlier, or a script."""
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

    def _launch(self, c: ast.Call, conditional: bool) -> None:
        """subprocess.run([...]) / os.system("..."): the command to the session's shell reader."""
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
                self.s.shell(self.s, Shell("", c.lineno, words, unknown), self.label, self.first, conditional)
                return
            if TRAINING_HINT.search(ast.unparse(c.args[0])):
                self.s.notes.append(Note(message="a training command built at run time: not read (only "
                                                 "literal commands are)", source=self.src(c)))
            return
        if isinstance(arg, (list, tuple)) and all(isinstance(a, (str, int, float)) for a in arg):
            words = [str(a) for a in arg]
            self.s.shell(self.s, Shell("", c.lineno, words), self.label, self.first, conditional)
        elif isinstance(arg, str):
            self.s.shell(self.s, Shell(arg, c.lineno), self.label, self.first, conditional)

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

    def _globals_set(self, name: str, seen: set[str]) -> set[str]:
        if name in seen or name not in self.s.functions:
            return set()
        seen.add(name)
        fn = self.s.functions[name][0]
        declared = {n for st in ast.walk(fn) if isinstance(st, ast.Global) for n in st.names}
        out = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)} & declared
        for node in ast.walk(fn):
            if isinstance(node, ast.Call):
                out |= self._globals_set(dotted(node.func) or "", seen)
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


def open_for_write(node: ast.expr, w: Calls) -> str | None:
    if not (isinstance(node, ast.Call) and dotted(node.func) in ("open", "io.open") and node.args):
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
