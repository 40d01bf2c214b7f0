"""Read a Python launch file without `launch` or `launch_ros` installed.

The file is parsed with `ast` and its `generate_launch_description()` is
evaluated by a small interpreter that knows only what a declarative launch
file needs: constants, imports of plain-Python modules (real imports, e.g. the
suite's shared names), lists, dicts, comprehensions, calls of ordinary
functions, and the launch API as inert records. Substitutions stay lazy
(`LaunchArg`, `JoinPath`, ...) until `resolve()` turns them into strings with
the file's argument defaults or caller-given values.

What comes out (`LaunchFile`): every `Node` / `LifecycleNode`, every included
launch file, every `ExecuteProcess`, every declared and every used launch
argument. `oft_bringup.launch_check` checks them against the built workspace.
Anything the interpreter cannot follow becomes `Unknown(reason)`, never a guess.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

LAUNCH_MODULES = ("launch", "launch_ros")
"""Top-level modules whose names become inert records instead of being imported."""

NODE_ACTIONS = ("Node", "LifecycleNode")


@dataclass(frozen=True)
class Unknown:
    """A value the static reading cannot know (e.g. an argument without a default)."""

    reason: str

    def __str__(self) -> str:
        return f"<unknown: {self.reason}>"


@dataclass(frozen=True)
class LaunchSymbol:
    """A name imported from `launch` / `launch_ros` (a class, function or module)."""

    qualname: str

    @property
    def short(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]


@dataclass
class LaunchCall:
    """A call of a launch API symbol, e.g. `IfCondition(...)` or `LogInfo(msg=...)`."""

    kind: str
    args: list
    kwargs: dict
    line: int


@dataclass(frozen=True)
class LaunchArg:
    """`LaunchConfiguration(name)`: the value of a launch argument, resolved late."""

    name: str
    default: Any = None


@dataclass(frozen=True)
class JoinPath:
    """`PathJoinSubstitution([...])`."""

    parts: tuple


@dataclass(frozen=True)
class PackageShare:
    """`FindPackageShare(package)`."""

    package: Any


@dataclass(frozen=True)
class PackageExecutable:
    """`ExecutableInPackage(package=..., executable=...)`: lib/<package>/<executable>."""

    package: Any
    executable: Any


@dataclass(frozen=True)
class PyExpression:
    """`PythonExpression([...])`: the concatenated parts, evaluated as Python at launch time."""

    parts: tuple


@dataclass(frozen=True)
class TypedValue:
    """`ParameterValue(value, value_type=...)`: a parameter value launch_ros does not YAML-parse."""

    value: Any
    value_type: Any = None


@dataclass(frozen=True)
class Concat:
    """A list of substitutions that launch concatenates into one string."""

    parts: tuple


@dataclass
class NodeAction:
    """One `Node(...)` or `LifecycleNode(...)` of a launch file."""

    kind: str
    line: int
    kwargs: dict

    def get(self, key: str, default=None):
        return self.kwargs.get(key, default)


@dataclass
class LaunchFile:
    path: Path
    nodes: List[NodeAction] = field(default_factory=list)
    includes: List[LaunchCall] = field(default_factory=list)
    processes: List[LaunchCall] = field(default_factory=list)
    calls: List[LaunchCall] = field(default_factory=list)
    declared: Dict[str, Any] = field(default_factory=dict)  # argument name -> default (None: required)
    used_args: Dict[str, int] = field(default_factory=dict)  # argument name -> first line using it
    problems: List[str] = field(default_factory=list)
    description: Any = None  # what generate_launch_description() returned


def resolve(value, arguments: Dict[str, Any], declared: Dict[str, Any]):
    """Turn lazy substitutions into plain values; `Unknown` where that is impossible.

    `arguments` (caller-given launch arguments) win over declared defaults.
    """
    if isinstance(value, LaunchArg):
        if value.name in arguments:
            return resolve(arguments[value.name], arguments, declared)
        if value.default is not None:
            return resolve(value.default, arguments, declared)
        if declared.get(value.name) is not None:
            return resolve(declared[value.name], arguments, declared)
        return Unknown(f"launch argument '{value.name}' has no value")
    if isinstance(value, JoinPath):
        parts = [_as_text(resolve(p, arguments, declared)) for p in value.parts]
        return _first_unknown(parts) or os.path.join(*parts)
    if isinstance(value, Concat):
        parts = [_as_text(resolve(p, arguments, declared)) for p in value.parts]
        return _first_unknown(parts) or "".join(parts)
    if isinstance(value, PackageShare):
        package = resolve(value.package, arguments, declared)
        if isinstance(package, Unknown):
            return package
        try:
            from ament_index_python.packages import get_package_share_directory

            return get_package_share_directory(package)
        except Exception as exc:  # PackageNotFoundError, or no ament index at all
            return Unknown(f"package '{package}' not found: {exc}")
    if isinstance(value, PyExpression):
        text = resolve(Concat(value.parts), arguments, declared)
        if isinstance(text, Unknown):
            return text
        try:
            import math

            return str(eval(text, {"math": math}))  # what launch's PythonExpression does, on our own files
        except Exception as exc:
            return Unknown(f"PythonExpression {text!r} raised {exc!r}")
    if isinstance(value, PackageExecutable):
        package, executable = resolve(value.package, arguments, declared), resolve(value.executable, arguments, declared)
        if isinstance(package, Unknown) or isinstance(executable, Unknown):
            return package if isinstance(package, Unknown) else executable
        from oft_bringup.node_interface import IntrospectionError, executable_path

        try:
            return str(executable_path(package, executable))
        except IntrospectionError as exc:
            return Unknown(str(exc))
    if isinstance(value, list):
        return [resolve(v, arguments, declared) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve(v, arguments, declared) for v in value)
    if isinstance(value, dict):
        return {resolve(k, arguments, declared): resolve(v, arguments, declared) for k, v in value.items()}
    return value


def condition_holds(condition, arguments, declared):
    """Whether an action's `condition=` (None, IfCondition, UnlessCondition) lets it run; Unknown if undecidable."""
    if condition is None:
        return True
    if not isinstance(condition, LaunchCall) or condition.kind not in ("IfCondition", "UnlessCondition"):
        return Unknown(f"condition {getattr(condition, 'kind', condition)!r}")
    predicate = condition.args[0] if condition.args else condition.kwargs.get("predicate_expression")
    text = resolve_text(predicate, arguments, declared)
    if isinstance(text, Unknown):
        return text
    # launch's rule: 'true'/'1' and 'false'/'0', any case; anything else is an error.
    truth = {"true": True, "1": True, "false": False, "0": False}.get(text.strip().lower())
    if truth is None:
        return Unknown(f"condition value {text!r} is neither true nor false")
    return truth if condition.kind == "IfCondition" else not truth


def resolve_text(value, arguments, declared):
    """Like `resolve`, but a list of parts is one concatenated string (as launch reads it)."""
    if isinstance(value, list):
        value = Concat(tuple(value))
    return _as_text(resolve(value, arguments, declared))


def _as_text(value):
    if isinstance(value, (Unknown, str)):
        return value
    if isinstance(value, (int, float, bool)):
        return str(value)
    return Unknown(f"not text: {value!r}")


def _first_unknown(values):
    return next((v for v in values if isinstance(v, Unknown)), None)


class _Return(Exception):
    def __init__(self, value):
        self.value = value


@dataclass
class _Function:
    node: ast.FunctionDef
    scope: dict


class _Interpreter:
    """Evaluates the subset of Python a declarative launch file uses."""

    MAX_DEPTH = 20

    def __init__(self, launch_file: LaunchFile):
        self.out = launch_file
        self.depth = 0
        self.reached_lines = set()

    # statements --------------------------------------------------------
    def run_module(self, tree: ast.Module) -> dict:
        scope: dict = {"__name__": "__launch__", "__file__": str(self.out.path)}
        for stmt in tree.body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                self._import(stmt, scope)
            elif isinstance(stmt, ast.FunctionDef):
                scope[stmt.name] = _Function(stmt, scope)
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                self._assign(stmt, scope)
            # Other module-level statements (docstrings, `if __name__`) do not shape the description.
        return scope

    def run_body(self, body, scope):
        for stmt in body:
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                self._assign(stmt, scope)
            elif isinstance(stmt, ast.Return):
                raise _Return(self.eval(stmt.value, scope) if stmt.value else None)
            elif isinstance(stmt, ast.Expr):
                self.eval(stmt.value, scope)
            elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
                self._import(stmt, scope)
            elif isinstance(stmt, ast.FunctionDef):
                scope[stmt.name] = _Function(stmt, scope)
            elif isinstance(stmt, ast.If):
                test = self.eval(stmt.test, scope)
                if isinstance(test, (Unknown, LaunchCall, LaunchArg)):
                    self.out.problems.append(
                        f"line {stmt.lineno}: `if` on a value known only at launch time; "
                        "use a launch condition (IfCondition) instead"
                    )
                    continue
                self.run_body(stmt.body if test else stmt.orelse, scope)
            elif isinstance(stmt, ast.For):
                iterable = self.eval(stmt.iter, scope)
                if isinstance(iterable, Unknown):
                    self.out.problems.append(f"line {stmt.lineno}: cannot iterate {iterable}")
                    continue
                for item in iterable:
                    self._bind(stmt.target, item, scope)
                    self.run_body(stmt.body, scope)
            elif isinstance(stmt, ast.Pass):
                continue
            else:
                self.out.problems.append(
                    f"line {stmt.lineno}: {type(stmt).__name__} statement not understood by the static reader"
                )

    def _assign(self, stmt, scope):
        if isinstance(stmt, ast.AnnAssign):
            if stmt.value is not None:
                self._bind(stmt.target, self.eval(stmt.value, scope), scope)
            return
        value = self.eval(stmt.value, scope)
        for target in stmt.targets:
            self._bind(target, value, scope)

    def _bind(self, target, value, scope):
        if isinstance(target, ast.Name):
            scope[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)) and not isinstance(value, Unknown):
            values = list(value)
            for sub, item in zip(target.elts, values):
                self._bind(sub, item, scope)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for sub in target.elts:
                self._bind(sub, value, scope)
        # Attribute / subscript targets change nothing the checks read.

    def _import(self, stmt, scope):
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                top = alias.name.split(".")[0]
                bound = alias.asname or top
                if top in LAUNCH_MODULES:
                    scope[bound] = LaunchSymbol(alias.name if alias.asname else top)
                else:
                    scope[bound] = self._real_import(alias.name if alias.asname else top)
            return
        module = stmt.module or ""
        for alias in stmt.names:
            bound = alias.asname or alias.name
            if module.split(".")[0] in LAUNCH_MODULES:
                scope[bound] = LaunchSymbol(f"{module}.{alias.name}")
                continue
            imported = self._real_import(module)
            scope[bound] = (
                getattr(imported, alias.name, Unknown(f"{module}.{alias.name}"))
                if not isinstance(imported, Unknown)
                else imported
            )

    @staticmethod
    def _real_import(name):
        try:
            return importlib.import_module(name)
        except Exception as exc:  # missing on this machine: the value stays unknown
            return Unknown(f"import {name} failed: {exc}")

    # expressions -------------------------------------------------------
    def eval(self, node, scope):  # noqa: C901 (one dispatch over node types)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in scope:
                return scope[node.id]
            if hasattr(builtins, node.id):
                return getattr(builtins, node.id)
            return Unknown(f"name {node.id}")
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = []
            for elt in node.elts:
                if isinstance(elt, ast.Starred):
                    inner = self.eval(elt.value, scope)
                    items.extend(inner if not isinstance(inner, Unknown) else [inner])
                else:
                    items.append(self.eval(elt, scope))
            return tuple(items) if isinstance(node, ast.Tuple) else items
        if isinstance(node, ast.Dict):
            result = {}
            for key, value in zip(node.keys, node.values):
                if key is None:
                    inner = self.eval(value, scope)
                    if isinstance(inner, dict):
                        result.update(inner)
                    continue
                result[self._hashable(self.eval(key, scope))] = self.eval(value, scope)
            return result
        if isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                part = self.eval(value.value if isinstance(value, ast.FormattedValue) else value, scope)
                parts.append(part)
            if all(isinstance(p, (str, int, float)) for p in parts):
                return "".join(str(p) for p in parts)
            return Concat(tuple(parts))
        if isinstance(node, ast.Attribute):
            base = self.eval(node.value, scope)
            if isinstance(base, LaunchSymbol):
                return LaunchSymbol(f"{base.qualname}.{node.attr}")
            if isinstance(base, (Unknown, LaunchCall)):
                return Unknown(f"attribute {node.attr} of {base}")
            try:
                return getattr(base, node.attr)
            except AttributeError:
                return Unknown(f"attribute {node.attr}")
        if isinstance(node, ast.Subscript):
            base = self.eval(node.value, scope)
            index = self.eval(node.slice, scope)
            try:
                return base[index]
            except Exception:
                return Unknown("subscript")
        if isinstance(node, ast.Slice):
            parts = [self.eval(p, scope) if p is not None else None for p in (node.lower, node.upper, node.step)]
            return slice(*parts)
        if isinstance(node, ast.BinOp):
            left, right = self.eval(node.left, scope), self.eval(node.right, scope)
            return self._binop(node.op, left, right)
        if isinstance(node, ast.BoolOp):
            values = [self.eval(v, scope) for v in node.values]
            if any(isinstance(v, (Unknown, LaunchArg, LaunchCall)) for v in values):
                return Unknown("boolean of launch-time values")
            result = values[0]
            for value in values[1:]:
                result = (result and value) if isinstance(node.op, ast.And) else (result or value)
            return result
        if isinstance(node, ast.UnaryOp):
            operand = self.eval(node.operand, scope)
            if isinstance(operand, (Unknown, LaunchArg, LaunchCall)):
                return Unknown("unary op of a launch-time value")
            return {ast.Not: lambda v: not v, ast.USub: lambda v: -v, ast.UAdd: lambda v: +v}.get(
                type(node.op), lambda v: Unknown("unary op")
            )(operand)
        if isinstance(node, ast.Compare):
            values = [self.eval(node.left, scope)] + [self.eval(c, scope) for c in node.comparators]
            if any(isinstance(v, (Unknown, LaunchArg, LaunchCall)) for v in values):
                return Unknown("comparison of launch-time values")
            try:
                return self._compare(node, values)
            except Exception:
                return Unknown("comparison")
        if isinstance(node, ast.IfExp):
            test = self.eval(node.test, scope)
            if isinstance(test, (Unknown, LaunchArg, LaunchCall)):
                return Unknown("conditional expression on a launch-time value")
            return self.eval(node.body if test else node.orelse, scope)
        if isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp)):
            return self._comprehension(node, scope, lambda s: self.eval(node.elt, s))
        if isinstance(node, ast.DictComp):
            pairs = self._comprehension(
                node, scope, lambda s: (self._hashable(self.eval(node.key, s)), self.eval(node.value, s))
            )
            return dict(pairs) if isinstance(pairs, list) else pairs
        if isinstance(node, ast.Call):
            return self._call(node, scope)
        if isinstance(node, ast.Lambda):
            return Unknown("lambda")
        return Unknown(f"{type(node).__name__} expression")

    @staticmethod
    def _hashable(value):
        try:
            hash(value)
            return value
        except TypeError:
            return repr(value)

    @staticmethod
    def _compare(node, values):
        ops = {
            ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
            ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
            ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
            ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
            ast.Is: lambda a, b: a is b, ast.IsNot: lambda a, b: a is not b,
        }
        for op, left, right in zip(node.ops, values, values[1:]):
            if not ops[type(op)](left, right):
                return False
        return True

    @staticmethod
    def _binop(op, left, right):
        lazy = (LaunchArg, JoinPath, PackageShare, PackageExecutable, PyExpression, TypedValue, Concat)
        if isinstance(op, ast.Add) and (isinstance(left, lazy) or isinstance(right, lazy)):
            return Concat((left, right))
        if isinstance(left, Unknown) or isinstance(right, Unknown):
            return left if isinstance(left, Unknown) else right
        operators = {
            ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
            ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
        }
        try:
            return operators[type(op)](left, right)
        except Exception:
            return Unknown("arithmetic")

    def _comprehension(self, node, scope, produce):
        results = []

        def loop(generators, inner_scope):
            if not generators:
                results.append(produce(inner_scope))
                return
            generator = generators[0]
            iterable = self.eval(generator.iter, inner_scope)
            if isinstance(iterable, Unknown):
                raise ValueError(iterable.reason)
            for item in iterable:
                child = dict(inner_scope)
                self._bind(generator.target, item, child)
                if all(self.eval(cond, child) for cond in generator.ifs):
                    loop(generators[1:], child)

        try:
            loop(node.generators, dict(scope))
        except ValueError as exc:
            return Unknown(f"comprehension over an unknown iterable ({exc})")
        return results

    def _call(self, node: ast.Call, scope):
        func = self.eval(node.func, scope)
        args = []
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                inner = self.eval(arg.value, scope)
                args.extend(inner if not isinstance(inner, Unknown) else [inner])
            else:
                args.append(self.eval(arg, scope))
        kwargs = {}
        for keyword in node.keywords:
            value = self.eval(keyword.value, scope)
            if keyword.arg is None:
                if isinstance(value, dict):
                    kwargs.update(value)
                continue
            kwargs[keyword.arg] = value
        if isinstance(func, LaunchSymbol):
            return self._launch_call(func, args, kwargs, node.lineno)
        if isinstance(func, _Function):
            return self._call_function(func, args, kwargs)
        if isinstance(func, Unknown) or not callable(func):
            return Unknown(f"call of {func}")
        if any(isinstance(v, (LaunchArg, JoinPath, PackageShare, PackageExecutable, PyExpression, TypedValue, Concat,
                              LaunchCall))
               for v in [*args, *kwargs.values()]):
            return Unknown(f"{getattr(func, '__name__', func)}() of a launch-time value")
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            return Unknown(f"{getattr(func, '__name__', func)}() raised {exc!r}")

    def _call_function(self, function: _Function, args, kwargs):
        if self.depth >= self.MAX_DEPTH:
            return Unknown("recursion too deep")
        spec = function.node.args
        local = dict(function.scope)
        params = [a.arg for a in spec.posonlyargs + spec.args]
        defaults = dict(zip(params[len(params) - len(spec.defaults):], spec.defaults))
        for name, value in zip(params, args):
            local[name] = value
        for name in params[len(args):]:
            if name in kwargs:
                local[name] = kwargs.pop(name)
            elif name in defaults:
                local[name] = self.eval(defaults[name], function.scope)
            else:
                local[name] = Unknown(f"missing argument {name}")
        for arg, default in zip(spec.kwonlyargs, spec.kw_defaults):
            local[arg.arg] = kwargs.pop(arg.arg) if arg.arg in kwargs else (
                self.eval(default, function.scope) if default is not None else Unknown(arg.arg)
            )
        if spec.vararg:
            local[spec.vararg.arg] = tuple(args[len(params):])
        if spec.kwarg:
            local[spec.kwarg.arg] = kwargs
        self.depth += 1
        try:
            self.run_body(function.node.body, local)
        except _Return as returned:
            return returned.value
        finally:
            self.depth -= 1
        return None

    def _launch_call(self, symbol: LaunchSymbol, args, kwargs, line):
        kind = symbol.short
        self.reached_lines.add(line)
        if kind == "LaunchConfiguration":
            name = args[0] if args else kwargs.get("variable_name")
            if isinstance(name, str):
                self.out.used_args.setdefault(name, line)
            return LaunchArg(name, kwargs.get("default", args[1] if len(args) > 1 else None))
        if kind == "PathJoinSubstitution":
            parts = args[0] if args else kwargs.get("substitutions", [])
            return JoinPath(tuple(parts))
        if kind == "FindPackageShare":
            return PackageShare(args[0] if args else kwargs.get("package"))
        if kind == "PythonExpression":
            parts = args[0] if args else kwargs.get("expression", [])
            return PyExpression(tuple(parts) if isinstance(parts, (list, tuple)) else (parts,))
        if kind == "ParameterValue":
            return TypedValue(args[0] if args else kwargs.get("value"), kwargs.get("value_type"))
        if kind == "ExecutableInPackage":
            return PackageExecutable(kwargs.get("package", args[1] if len(args) > 1 else None),
                                     kwargs.get("executable", args[0] if args else None))
        if kind == "TextSubstitution":
            return kwargs.get("text", args[0] if args else "")
        if kind in NODE_ACTIONS:
            action = NodeAction(kind, line, kwargs)
            self.out.nodes.append(action)
            return action
        call = LaunchCall(kind, args, kwargs, line)
        self.out.calls.append(call)
        if kind == "DeclareLaunchArgument":
            name = args[0] if args else kwargs.get("name")
            self.out.declared[name] = kwargs.get("default_value", args[1] if len(args) > 1 else None)
        elif kind == "IncludeLaunchDescription":
            self.out.includes.append(call)
        elif kind == "ExecuteProcess":
            self.out.processes.append(call)
        return call


def read_launch_file(path) -> LaunchFile:
    """Parse and statically evaluate one launch file (no `launch` import)."""
    path = Path(path)
    result = LaunchFile(path=path)
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as exc:
        result.problems.append(f"syntax error: {exc}")
        return result
    interpreter = _Interpreter(result)
    scope = interpreter.run_module(tree)
    entry = scope.get("generate_launch_description")
    if not isinstance(entry, _Function):
        result.problems.append("no generate_launch_description() function")
        return result
    result.description = interpreter._call_function(entry, [], {})
    # A node the interpreter never reached (inside a lambda, an OpaqueFunction, ...) would go unchecked.
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and _called_name(call) in NODE_ACTIONS and call.lineno not in interpreter.reached_lines:
            result.problems.append(
                f"line {call.lineno}: {_called_name(call)}(...) is not reached by static evaluation "
                "of generate_launch_description(); keep node actions in straight-line code"
            )
    return result


def _called_name(call: ast.Call) -> Optional[str]:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None
