"""Writing specialised definitions back as source: unchanged statements keep their text, changed ones are unparsed."""

from __future__ import annotations

import ast

from harness.repro.ast_names import _NOQA

# ---- rendering: unchanged statements keep their text, changed ones are unparsed --------------------
def render(node: ast.stmt, indent: int) -> list[str]:
    """The source lines of statement `node` at `indent` spaces."""
    orig = getattr(node, "_orig", None)
    pad = " " * indent
    if getattr(node, "_dict_of", None) is not None:
        return _render_selected_dict(node, pad)
    if orig is not None and hasattr(orig, "_src") and not _compound(node) and ast.dump(node) == ast.dump(orig):
        return _reindent(_segment(orig), orig.col_offset, indent)
    if _compound(node):
        return _render_compound(node, orig, indent)
    return [pad + line for line in ast.unparse(node).splitlines()]


def _compound(node: ast.AST) -> bool:
    return isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.FunctionDef, ast.ClassDef))


def _render_compound(node, orig, indent: int) -> list[str]:
    pad = " " * indent
    out = _header(node, orig, indent)
    out += _block(node.body, indent + 4)
    if isinstance(node, ast.Try):
        for handler in node.handlers:
            head = copy_shallow(handler, body=[ast.Pass()])
            out += [pad + ast.unparse(head).splitlines()[0]]
            out += _block(handler.body, indent + 4)
    orelse = getattr(node, "orelse", None)
    if orelse:
        elif_ = isinstance(node, ast.If) and len(orelse) == 1 and isinstance(orelse[0], ast.If) and \
            _is_elif(orelse[0])
        if elif_:
            lines = render(orelse[0], indent)
            if lines[0].lstrip().startswith("if "):
                lines[0] = pad + "el" + lines[0].lstrip()
            out += lines
        else:
            out += [pad + "else:"] + _block(orelse, indent + 4)
    if isinstance(node, ast.Try) and node.finalbody:
        out += [pad + "finally:"] + _block(node.finalbody, indent + 4)
    return out


def _is_elif(node: ast.If) -> bool:
    orig = getattr(node, "_orig", None)
    if orig is None or not hasattr(orig, "_src"):
        return True
    return orig._src[orig.lineno - 1][orig.col_offset:].startswith("elif")


def _block(stmts: list[ast.stmt], indent: int) -> list[str]:
    out: list[str] = []
    for stmt in stmts:
        out += render(stmt, indent)
    return out or [" " * indent + "pass"]


def _header(node, orig, indent: int) -> list[str]:
    """The compound statement's first clause header: its own text when unchanged, else unparsed."""
    same = orig is not None and hasattr(orig, "_src") and _head_dump(node) == _head_dump(orig)
    if same and orig.body and orig.body[0].lineno > orig.lineno:
        start = min([d.lineno for d in getattr(orig, "decorator_list", [])] + [orig.lineno])
        lines = orig._src[start - 1:orig.body[0].lineno - 1]
        while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("#")):
            lines = lines[:-1]
        if lines and lines[-1].rstrip().endswith(":") or lines and "#" in lines[-1]:
            return _reindent("\n".join(lines), orig.col_offset, indent)
    head = copy_shallow(node, body=[ast.Pass()], orelse=[], handlers=[], finalbody=[])
    if isinstance(node, ast.Try):
        return [" " * indent + "try:"]
    lines = ast.unparse(head).splitlines()[:-1]
    return [" " * indent + line for line in lines]


def _head_dump(node) -> str:
    return ast.dump(copy_shallow(node, body=[], orelse=[], handlers=[], finalbody=[]))


def copy_shallow(node, **fields):
    import copy

    new = copy.copy(node)
    for name, value in fields.items():
        if hasattr(new, name):
            setattr(new, name, value)
    return new


def _segment(node: ast.AST) -> str:
    start = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno])
    lines = node._src[start - 1:node.end_lineno]
    return "\n".join(_NOQA.sub("", line) for line in lines)


def _reindent(text: str, current: int, indent: int) -> list[str]:
    out = []
    for line in text.splitlines():
        stripped = line[current:] if line[:current].strip() == "" else line.lstrip()
        out.append((" " * indent + stripped) if stripped.strip() else "")
    return out


def _render_selected_dict(node, pad: str) -> list[str]:
    orig = node._dict_of
    name = ast.unparse(node.targets[0])
    lines = [f"{pad}{name} = {{"]
    for key, value in zip(node.value.keys, node.value.values):
        start, end = key, value
        text = "\n".join(orig._src[start.lineno - 1:end.end_lineno])
        first = orig._src[start.lineno - 1]
        body = text[start.col_offset:len(text) - (len(orig._src[end.end_lineno - 1]) - end.end_col_offset)]
        body_lines = body.splitlines()
        lines.append(pad + "    " + body_lines[0])
        lines += _reindent("\n".join(body_lines[1:]), len(first) - len(first.lstrip()), len(pad) + 4)
        lines[-1] += ","
    lines.append(pad + "}")
    return lines
