"""Tools, resource templates and prompts built from what the SDK derives, derived ahead
of time.

Whenever a server is built, the SDK derives each tool's ``inputSchema`` and
``outputSchema`` from its signature with pydantic's JSON-schema generator; for each
resource template and prompt, an argument model and its JSON schema (a template keeps it
and neither lists nor reads it; a prompt lists the arguments read from it): for our
thirteen tools, ten templates and four prompts, the largest part of building a server.
They change only when a signature or an output model does, so they are derived once,
kept in ``prebuilt.json`` beside this module, and the SDK's ``Tool``,
``ResourceTemplate`` and ``Prompt`` objects are built from them. A tool's argument model
(the fields the SDK's ``func_metadata`` makes), and the ``validate_call`` validator of a
template or prompt, are built by pydantic on the first call that needs them.

``python -m mcp_checkpoint.server._prebuilt`` rewrites the file; ``tests/server/
test_prebuilt.py`` fails when the file and what the SDK derives drift apart, and when a
tool, template or prompt built here differs from the SDK's own in anything a client sees
or a call uses.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args, get_origin

from mcp.server.mcpserver.prompts.base import Prompt, PromptArgument
from mcp.server.mcpserver.resolve import build_resolver_plans, find_resolved_parameters
from mcp.server.mcpserver.resources import ResourceTemplate
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.context_injection import find_context_parameter
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.shared.uri_template import UriTemplate
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, ConfigDict, create_model, validate_call

if TYPE_CHECKING:
    from mcp.server import MCPServer

__all__ = [
    "PATH", "add_template", "derive", "load", "prebuilt_prompt", "prebuilt_tool", "render",
]

PATH = Path(__file__).with_name("prebuilt.json")

Schemas = dict[str, dict[str, Any]]


@cache
def load() -> dict[str, Any]:
    """``{"tools": {name: {"inputSchema": ..., "outputSchema": ...}}, "resource_templates":
    {uri: parameters}, "prompts": {name: [argument, ...]}}``, as the file holds them (key
    order kept: the listing shows it)."""
    loaded: dict[str, Any] = json.loads(PATH.read_text(encoding="utf-8"))
    return loaded


def _output_model(fn: Callable[..., Any]) -> type[BaseModel]:
    """The model a tool's result is validated against: its return annotation, a pydantic
    model, or the model in ``Annotated[CallToolResult, Model]`` (as the SDK reads them)."""
    returned = inspect.signature(fn).return_annotation
    if get_origin(returned) is Annotated:
        base, model, *_ = get_args(returned)
        if base is CallToolResult and isinstance(model, type) and issubclass(model, BaseModel):
            return model
    elif isinstance(returned, type) and issubclass(returned, BaseModel):
        return returned
    raise TypeError(f"tool {fn.__name__}: return a pydantic model (got {returned!r})")


class _Arguments(ArgModelBase):
    # The SDK's base of argument models, built on a tool's first call (not at start).
    model_config = ConfigDict(defer_build=True)


def _arguments_model(fn: Callable[..., Any], skip: list[str]) -> type[ArgModelBase]:
    """The model that validates a call's arguments: the fields the SDK's ``func_metadata``
    makes of ``fn``'s parameters (each annotated, none shadowing a ``BaseModel``
    attribute, so no alias or placeholder schema is needed), on a deferred base."""
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn, eval_str=True).parameters.values():
        if param.name in skip:
            continue
        if param.annotation is inspect.Parameter.empty or hasattr(BaseModel, param.name):
            raise TypeError(f"tool {fn.__name__}: parameter {param.name!r} needs the SDK's "
                            "handling (no annotation, or a BaseModel attribute's name)")
        empty = param.default is inspect.Parameter.empty
        fields[param.name] = param.annotation if empty else (param.annotation, param.default)
    arguments: type[ArgModelBase] = create_model(
        f"{fn.__name__}Arguments", __base__=_Arguments, **fields
    )
    return arguments


def prebuilt_tool(
    fn: Callable[..., Any],
    *,
    name: str,
    title: str,
    description: str,
    annotations: ToolAnnotations,
    schemas: dict[str, Any],
) -> Tool:
    """The SDK's ``Tool`` for ``fn`` with structured output, as ``Tool.from_function``
    would build it, but with ``schemas`` (its entry in :func:`load`) instead of deriving
    them, and with an argument model that pydantic builds on the tool's first call."""
    # Tool.from_function's steps, but for deriving the two schemas.
    context_kwarg = find_context_parameter(fn)
    resolved = find_resolved_parameters(fn)  # e.g. checkpoint's Sample(...) parameter
    skip = [*([context_kwarg] if context_kwarg is not None else []), *resolved]
    arguments = _arguments_model(fn, skip)
    names = {field.alias or n for n, field in arguments.model_fields.items()}
    metadata = FuncMetadata(
        arg_model=arguments,
        output_schema=schemas["outputSchema"],
        output_model=_output_model(fn),
    )
    return Tool(
        fn=fn,
        name=name,
        title=title,
        description=description,
        parameters=schemas["inputSchema"],
        fn_metadata=metadata,
        is_async=inspect.iscoroutinefunction(fn),
        context_kwarg=context_kwarg,
        resolved_params=dict(resolved),
        resolver_plans=build_resolver_plans(resolved, names),
        annotations=annotations,
    )


def _validated(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` behind pydantic's ``validate_call``, as the SDK wraps a template's or prompt's
    function (the arguments arrive as text and are cast to the parameters' types), with the
    validator built on the first call instead of now."""
    return validate_call(config=_DEFERRED)(fn)


_DEFERRED = ConfigDict(defer_build=True)


def add_template(
    server: MCPServer[Any],
    fn: Callable[..., Any],
    uri: str,
    *,
    name: str,
    description: str,
    mime_type: str,
    parameters: dict[str, Any],
) -> None:
    """Register ``fn`` as the resource template ``uri``, as ``server.resource(uri, ...)``
    would, but with ``parameters`` (its entry in :func:`load`) instead of deriving them.
    (The SDK has no public way to add a built template: this writes where its resource
    manager keeps them, as ``ResourceManager.add_template`` does.)"""
    template = ResourceTemplate(
        uri_template=uri,
        name=name,
        description=description,
        mime_type=mime_type,
        fn=_validated(fn),
        parameters=parameters,
        context_kwarg=find_context_parameter(fn),
        parsed_template=UriTemplate.parse(uri),
        security=server._resource_security,
    )
    server._resource_manager._templates[uri] = template


def prebuilt_prompt(
    fn: Callable[..., Any],
    *,
    name: str,
    title: str,
    description: str,
    arguments: list[dict[str, Any]],
) -> Prompt:
    """The SDK's ``Prompt`` for ``fn``, as ``Prompt.from_function`` would build it, but with
    ``arguments`` (its entry in :func:`load`) instead of deriving them from an argument
    model and its JSON schema (which it uses for nothing else)."""
    return Prompt(
        name=name,
        title=title,
        description=description,
        arguments=[PromptArgument(**argument) for argument in arguments],
        fn=_validated(fn),
        context_kwarg=find_context_parameter(fn),
    )


def derive() -> dict[str, Any]:
    """What the SDK derives for each tool, template and prompt, in the order they are
    listed."""
    from mcp_checkpoint.server.prompts import prompt_functions
    from mcp_checkpoint.server.resources import template_functions
    from mcp_checkpoint.server.tools import tool_functions

    tools: Schemas = {}
    for name, fn in tool_functions().items():
        tool = Tool.from_function(fn, name=name, structured_output=True)
        tools[name] = {"inputSchema": tool.parameters, "outputSchema": tool.output_schema}
    templates: Schemas = {
        uri: ResourceTemplate.from_function(fn, uri_template=uri, name=name).parameters
        for uri, name, fn in template_functions()
    }
    prompts = {
        name: [a.model_dump() for a in Prompt.from_function(fn, name=name).arguments or []]
        for name, fn in prompt_functions().items()
    }
    return {"tools": tools, "resource_templates": templates, "prompts": prompts}


def render() -> str:
    """The file's exact text."""
    return json.dumps(derive(), indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    """Rewrite ``prebuilt.json``."""
    PATH.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {PATH}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
