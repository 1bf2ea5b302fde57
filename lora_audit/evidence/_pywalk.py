"""How a notebook's Python is read, statement by statement, without running it (used by ``notebook``).

``_Walker`` follows a cell's statements in order: literal assignments into the ``Env`` (``_pyliteral``), ``if`` on
known values (both branches, their names then unknown, when not), loops over known values unrolled (else one pass
with the item unknown), the notebook's own functions read where they are called (parameters bound, locals put
back), ``open(path, "w")`` + ``toml.dump``/``f.write(toml.dumps(...))`` as files the notebook creates, and
``subprocess``/``os.system`` calls and ``!`` lines handed to the session's shell reader.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from lora_audit.evidence._pycalls import Calls, open_for_write
from lora_audit.evidence._pyliteral import CALL_HOOK, UNKNOWN_VALUE, Unknown, bind, evaluate, iterate
from lora_audit.evidence._pysession import (
    STEP_BUDGET,
    OverBudget,
    Session,
    Shell,
    dotted,
    inherit_sources,
    is_launch,
)


class _Walker(Calls):
    def __init__(self, s: Session, label: str, first_line: int, shells: dict[int, Shell]):
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

    def block(self, body: list[ast.stmt], conditional: bool) -> None:
        for st in body:
            self.stmt(st, conditional)

    def stmt(self, st: ast.stmt, conditional: bool) -> None:
        self.s.steps += 1
        if self.s.steps > STEP_BUDGET:
            raise OverBudget()
        calls = self._header_calls(st)
        try:
            self._stmt(st, conditional)
        finally:
            # a notebook function called in an expression that was not read (its value was not needed or could
            # not be had): the globals it sets are unknown, never left at their earlier value
            for c in calls:
                if id(c) not in self.s.walked:
                    for n in self._globals_set(dotted(c.func) or "", set()):
                        self.s.env.forget(n)

    def _stmt(self, st: ast.stmt, conditional: bool) -> None:
        step = _STATEMENTS.get(type(st))
        if step is not None:
            step(self, st, conditional)

    def _pass(self, st: ast.Pass, conditional: bool) -> None:
        if st.lineno in self.shells:  # a ! line or %%bash cell, kept as `pass` in the parsed cell
            self.s.shell(self.s, self.shells[st.lineno], self.label, self.first, conditional)

    def _assign(self, st: ast.Assign | ast.AnnAssign, conditional: bool) -> None:
        env = self.s.env
        if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name) and \
                open_for_write(st.value, self) is not None:
            self.open_files[st.targets[0].id] = open_for_write(st.value, self) or ""  # f = open(path, "w")
            env.forget(st.targets[0].id)
            return
        if st.value is None:
            return
        targets = st.targets if isinstance(st, ast.Assign) else [st.target]
        if isinstance(st.value, ast.Call) and is_launch(st.value):
            self.call(st.value, conditional)  # process = subprocess.Popen(cmd, ...)
        try:
            v = self.value(st.value)
        except Unknown:
            v = UNKNOWN_VALUE
        for t in targets:
            self.assign(t, v, st, conditional)

    def _aug_assign(self, st: ast.AugAssign, conditional: bool) -> None:
        if not isinstance(st.target, ast.Name):
            return
        try:
            v = self.value(ast.BinOp(left=ast.Name(id=st.target.id, ctx=ast.Load()), op=st.op, right=st.value))
        except Unknown:
            v = UNKNOWN_VALUE
        self.assign(st.target, v, st, conditional)

    def _if(self, st: ast.If, conditional: bool) -> None:
        try:
            taken = bool(self.value(st.test))
        except Unknown:
            self.block(st.body, True)
            self.block(st.orelse, True)
            return
        self.block(st.body if taken else st.orelse, conditional)

    def _with(self, st: ast.With, conditional: bool) -> None:
        for item in st.items:
            path = open_for_write(item.context_expr, self)
            if isinstance(item.optional_vars, ast.Name):
                if path is not None:
                    self.open_files[item.optional_vars.id] = path
                else:  # a file whose path is not known (or not opened for writing): not the earlier one
                    self.open_files.pop(item.optional_vars.id, None)
        self.block(st.body, conditional)

    def _try(self, st: ast.Try, conditional: bool) -> None:
        self.block(st.body, conditional)

    def _for(self, st: ast.For, conditional: bool) -> None:
        if not self._unroll(st, conditional):
            self._loop(st, conditional)

    def _loop(self, st: ast.For | ast.While | ast.AsyncFor, conditional: bool) -> None:
        # one pass of the body with the loop variable unknown: what an iteration trains with, as far as it does
        # not depend on the item (a value that does stays unknown); every name the loop sets is forgotten first
        for node in ast.walk(st):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                self.s.env.forget(node.id)
        self.s.loops += 1
        try:
            self.block(st.body, conditional)
        finally:
            self.s.loops -= 1

    def _delete(self, st: ast.Delete, conditional: bool) -> None:
        for t in st.targets:
            if isinstance(t, ast.Subscript):
                try:
                    container, key = self.value(t.value), self.value(t.slice)
                except Unknown:
                    continue
                if isinstance(container, dict) and not conditional:
                    container.pop(key, None)

    def _def(self, st: ast.FunctionDef | ast.AsyncFunctionDef, conditional: bool) -> None:
        # a notebook's main()/create_config()/write_file(path, text): read when a cell calls it, in the cell
        # that defines it
        self.s.env.forget(st.name)
        self.s.functions[st.name] = (st, self.label, self.first, self.shells)

    def _class(self, st: ast.ClassDef, conditional: bool) -> None:
        self.s.env.forget(st.name)

    def _expr(self, st: ast.Expr, conditional: bool) -> None:
        if isinstance(st.value, ast.Call):
            self.call(st.value, conditional)

    def assign(self, target: ast.expr, v: Any, st: ast.stmt, conditional: bool) -> None:
        if isinstance(target, ast.Name):
            self._assign_name(target, v, st, conditional)
        elif isinstance(target, ast.Subscript):
            self._assign_item(target, v, st, conditional)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                self.assign(t, v[target.elts.index(t)] if isinstance(v, (list, tuple)) and len(v) == len(
                    target.elts) else UNKNOWN_VALUE, st, conditional)

    def _assign_name(self, target: ast.Name, v: Any, st: ast.stmt, conditional: bool) -> None:
        env = self.s.env
        if v is UNKNOWN_VALUE or conditional:
            env.forget(target.id)
            if isinstance(st, (ast.Assign, ast.AnnAssign)) and st.value is not None:
                self.s.nodes[target.id] = st.value
            self.s.texts[target.id] = ast.unparse(st.value)[:4000] if hasattr(st, "value") else ""
        else:
            inherit_sources(env, env.values.get(target.id), v)
            env.set(target.id, v, self.src(st))

    def _assign_item(self, target: ast.Subscript, v: Any, st: ast.stmt, conditional: bool) -> None:
        env = self.s.env
        name = dotted(target.value)
        try:
            key = self.value(target.slice)
        except Unknown:
            return
        if name == "os.environ" and isinstance(key, str):
            if isinstance(v, str) and not conditional:
                env.environ[key] = v
            else:
                env.environ.pop(key, None)
            return
        try:
            d = self.value(target.value)  # the live dict (config["general"]["x"] = ...)
        except Unknown:
            return
        if isinstance(d, dict):
            inherit_sources(env, d.get(key), v)
            d[key] = v if not conditional else UNKNOWN_VALUE
            if id(d) not in env.key_sources:
                env.sources_of(d, {})
            env.key_sources[id(d)][str(key)] = self.src(st)

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
                if isinstance(n, ast.Call) and (dotted(n.func) or "") in self.s.functions]


_STATEMENTS: dict[type, Callable[[Any, Any, bool], None]] = {
    ast.Pass: _Walker._pass, ast.Assign: _Walker._assign, ast.AnnAssign: _Walker._assign,
    ast.AugAssign: _Walker._aug_assign, ast.If: _Walker._if, ast.With: _Walker._with, ast.Try: _Walker._try,
    ast.For: _Walker._for, ast.While: _Walker._loop, ast.AsyncFor: _Walker._loop, ast.Delete: _Walker._delete,
    ast.FunctionDef: _Walker._def, ast.AsyncFunctionDef: _Walker._def, ast.ClassDef: _Walker._class,
    ast.Expr: _Walker._expr,
}
