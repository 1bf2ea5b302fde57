"""What a bash script reads and writes as files: ``source``/``.`` of a script next to it, and heredocs written to a
file (``cat > config.toml <<EOF``), kept for the training command that reads them."""

from __future__ import annotations

from pathlib import Path

from lora_audit.errors import EvidenceError
from lora_audit.evidence._bash_expand import _MAX_DEPTH, Expander, _word_text
from lora_audit.evidence._bash_lexer import Lexer, Redir
from lora_audit.evidence._bash_parse import Node, Parser
from lora_audit.evidence._bash_values import BREAK, RT, CreatedFile
from lora_audit.evidence._bash_words import Word
from lora_audit.evidence._script import Lines
from lora_audit.model import Note


class ScriptFiles(Expander):
    def _node(self, n: Node) -> bool | None:
        raise NotImplementedError  # the executor's (BashTokenizer)

    def _source(self, w: Word, notes: list[Note]) -> None:
        name = self._string(w)
        shown = name or _word_text(w)
        text: str | None = None
        label = shown
        if name is not None and name in self.files:
            f = self.files[name]
            text, label = f.text, f"{f.label}"
            first = f.line
        elif name is not None and self.path is not None and len(self._sourcing) < _MAX_DEPTH:
            from lora_audit.evidence._script import read_script
            from lora_audit.evidence.invocation import locate_file, relative_label

            target = locate_file(name, self.path.parent)
            if target is not None and _inside(target, self.path.parent):
                label = relative_label(target, self.path, self.label)
                if label in self._sourcing:
                    return
                try:
                    text = read_script(target, label)
                except EvidenceError as e:
                    self._note(notes, f"sources {shown}, which cannot be read ({e.message})", w.line)
                    text = None
                first = 1
        if text is None:
            if shown not in self.sourced:
                self.sourced.append(shown)
            return
        saved_label = self.label
        self._sourcing.append(label)
        self.label = label
        try:
            for node in Parser(Lexer(text, Lines(text, first), label).lines()).iter_parse():
                if self._repeating:
                    self._repeated += 1
                self._node(node)
        finally:
            self.label = saved_label
            self._sourcing.pop()

    def _heredoc_file(self, head: str, words: list[Word], redirs: list[Redir], notes: list[Note]) -> None:
        doc = next(r.heredoc for r in redirs if r.heredoc)
        assert doc is not None
        targets = [r for r in redirs if r.op in (">", ">>", ">|", "&>") and r.target is not None and r.fd in ("",
                                                                                                              "1")]
        names = [self._string(r.target) for r in targets if r.target is not None]
        append = any(r.op == ">>" for r in targets)
        if head == "tee":
            file_words = [w for w in words[1:] if not (w.plain() or "").startswith("-")]
            append = append or any(w.plain() in ("-a", "--append") for w in words[1:])
            names += [self._string(w) for w in file_words]
        if doc.expand:
            lex = Lexer(doc.body, Lines(doc.body, doc.line), self.label)
            pieces = self._expand(lex.heredoc().parts, notes)
            text = "".join(t for t, _, f in pieces if not f & BREAK)
            runtime = any(f & RT for _, _, f in pieces)
        else:
            text, runtime = doc.body, False
        for name in names:
            if name is None:
                self._note(notes, "a heredoc is written to a file whose name is only known at run time", doc.line)
                continue
            self._created = None
            if append and name in self.files:
                old = self.files[name]
                self.files[name] = CreatedFile(old.text + text, old.label, old.line, old.runtime or runtime)
            else:
                self.files[name] = CreatedFile(text, self.label, doc.line, runtime)


def _inside(target: Path, folder: Path) -> bool:
    try:
        target.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False
