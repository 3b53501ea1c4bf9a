"""Tools, resource templates and prompts are built from what the SDK derives, derived ahead
of time (``server/prebuilt.json``): the file must be what the SDK derives today, and each
one built from it must be the one the SDK builds, in what a client sees and in what a call
uses."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
from mcp.server import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt
from mcp.server.mcpserver.tools import Tool

from mcp_checkpoint.server import _prebuilt
from mcp_checkpoint.server.prompts import load_prompt, prompt_functions, register_prompts
from mcp_checkpoint.server.resources import register_resources, template_functions
from mcp_checkpoint.server.tools import build_tools

pytestmark = pytest.mark.anyio

REWRITE = "run: python -m mcp_checkpoint.server._prebuilt"


def _sdk_tool(tool: Tool) -> Tool:
    return Tool.from_function(
        tool.fn,
        name=tool.name,
        title=tool.title,
        description=tool.description,
        annotations=tool.annotations,
        structured_output=True,
    )


def _plans(tool: Tool) -> dict[Any, Any]:
    """The tool's resolver plans as plain values (the SDK's plan classes have no ``==``)."""
    return {
        key: (plan.fn, plan.is_async, plan.wire_key,
              {name: vars(param) for name, param in plan.params.items()})
        for key, plan in tool.resolver_plans.items()
    }


def _ordered(value: Any) -> str:
    # The listing shows keys in the order they are held: compare that order too.
    return json.dumps(value)


def test_prebuilt_file_is_what_the_sdk_derives() -> None:
    assert _prebuilt.PATH.read_text(encoding="utf-8") == _prebuilt.render(), REWRITE


@pytest.mark.parametrize("tool", build_tools(), ids=lambda tool: tool.name)
def test_prebuilt_tool_is_the_sdks(tool: Tool) -> None:
    sdk = _sdk_tool(tool)

    assert _ordered(tool.parameters) == _ordered(sdk.parameters), REWRITE
    assert _ordered(tool.output_schema) == _ordered(sdk.output_schema), REWRITE
    assert tool.model_dump(exclude={"fn_metadata"}) == sdk.model_dump(exclude={"fn_metadata"})
    assert (tool.is_async, tool.context_kwarg) == (sdk.is_async, sdk.context_kwarg)
    assert tool.resolved_params == sdk.resolved_params
    assert _plans(tool) == _plans(sdk)
    ours, theirs = tool.fn_metadata, sdk.fn_metadata
    assert (ours.output_model, ours.wrap_output) == (theirs.output_model, theirs.wrap_output)
    # The argument model validates calls: the same fields, aliases, defaults and rules.
    assert _ordered(ours.arg_model.model_json_schema(by_alias=True)) == _ordered(
        theirs.arg_model.model_json_schema(by_alias=True)
    )
    assert {n: repr(f) for n, f in ours.arg_model.model_fields.items()} == {
        n: repr(f) for n, f in theirs.arg_model.model_fields.items()
    }
    assert ours.arg_model.__name__ == theirs.arg_model.__name__  # named in validation errors


async def test_tools_list_is_what_sdk_registration_lists() -> None:
    prebuilt = MCPServer("x", tools=build_tools())
    # add_tool builds each with Tool.from_function, as _sdk_tool does.
    derived: MCPServer[Any] = MCPServer("x", tools=[_sdk_tool(tool) for tool in build_tools()])

    def listed(tools: list[Any]) -> str:
        return _ordered([t.model_dump(mode="json", by_alias=True) for t in tools])

    assert listed(await prebuilt.list_tools()) == listed(await derived.list_tools())


async def test_resource_templates_are_the_sdks() -> None:
    prebuilt: MCPServer[Any] = MCPServer("x")
    register_resources(prebuilt)
    derived: MCPServer[Any] = MCPServer("x")
    for uri, name, fn in template_functions():
        derived.resource(
            uri, name=name, description=(fn.__doc__ or "").strip(),
            mime_type=prebuilt._resource_manager._templates[uri].mime_type,
        )(fn)

    def listed(templates: list[Any]) -> str:
        return _ordered([t.model_dump(mode="json", by_alias=True) for t in templates])

    assert listed(await prebuilt.list_resource_templates()) == listed(
        await derived.list_resource_templates()
    )
    ours, theirs = prebuilt._resource_manager._templates, derived._resource_manager._templates
    assert list(ours) == list(theirs)
    for uri, template in ours.items():
        sdk = theirs[uri]
        assert _ordered(template.model_dump()) == _ordered(sdk.model_dump()), REWRITE
        assert template.context_kwarg == sdk.context_kwarg
        assert template.parsed_template == sdk.parsed_template
        assert template.security == sdk.security
        # Both call the same reader through pydantic's validate_call (URI text cast to types).
        assert inspect.unwrap(template.fn) is inspect.unwrap(sdk.fn)
        assert hasattr(template.fn, "raw_function")
        assert hasattr(sdk.fn, "raw_function")


async def test_prompts_are_the_sdks() -> None:
    prebuilt: MCPServer[Any] = MCPServer("x")
    register_prompts(prebuilt)
    derived: MCPServer[Any] = MCPServer("x")
    for name, fn in prompt_functions().items():
        meta = load_prompt(name)
        derived.add_prompt(
            Prompt.from_function(fn, name=name, title=meta.title, description=meta.description)
        )

    def listed(prompts: list[Any]) -> str:
        return _ordered([p.model_dump(mode="json", by_alias=True) for p in prompts])

    assert listed(await prebuilt.list_prompts()) == listed(await derived.list_prompts()), REWRITE
    ours, theirs = prebuilt._prompt_manager.list_prompts(), derived._prompt_manager.list_prompts()
    assert len(ours) == len(theirs)
    for prompt, sdk in zip(ours, theirs, strict=True):
        assert _ordered(prompt.model_dump()) == _ordered(sdk.model_dump()), REWRITE
        assert prompt.context_kwarg == sdk.context_kwarg
        assert inspect.unwrap(prompt.fn) is inspect.unwrap(sdk.fn)
        assert hasattr(prompt.fn, "raw_function")
        assert hasattr(sdk.fn, "raw_function")
