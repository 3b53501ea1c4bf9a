// The TypeScript SDK (what Claude Desktop, Claude Code and VS Code are built on) as a client
// of mcp-checkpoint: drives the whole loop, calls every tool the server lists (the SDK
// validates each structuredContent against the tool's output schema with ajv, as real
// clients do), reads every resource template and resource, gets every prompt, and checks
// that bad arguments come back as tool errors and unknown names as -32602.
//
//   node sdk-client.mjs stdio COMMAND [ARGS...]
//   node sdk-client.mjs http|sse URL            (MCPCK_TOKEN: the bearer token, if any)
//
// Prints one JSON summary line on stdout; exits 1 on the first failure (message on stderr).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UriTemplate } from '@modelcontextprotocol/sdk/shared/uriTemplate.js';
import { CreateMessageRequestSchema, ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';

const [mode, target, ...rest] = process.argv.slice(2);
const summary = { mode, tools: {}, badArguments: 0, templates: 0,
                  resources: 0, prompts: 0, sampled: 0 };

function fail(message) {
    process.stderr.write(`FAIL: ${message}\n`);
    process.exit(1);
}

function check(condition, message) {
    if (!condition) fail(message);
}

function transport() {
    const token = process.env.MCPCK_TOKEN;
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    if (mode === 'stdio') {
        return new StdioClientTransport({ command: target, args: rest, env: process.env, stderr: 'inherit' });
    }
    if (mode === 'http') {
        return new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers } });
    }
    if (mode === 'sse') {
        return new SSEClientTransport(new URL(target), {
            requestInit: { headers },
            eventSourceInit: { fetch: (url, init) => fetch(url, { ...init, headers: { ...init?.headers, ...headers } }) }
        });
    }
    fail(`unknown mode ${mode}`);
}

const client = new Client({ name: 'mcp-checkpoint-ts-e2e', version: '1.0.0' }, { capabilities: { sampling: {} } });
// The client's "model": answers a distillation request with a checkpoint patch.
client.setRequestHandler(CreateMessageRequestSchema, async () => {
    summary.sampled += 1;
    return {
        role: 'assistant', model: 'e2e-model', stopReason: 'endTurn',
        content: { type: 'text', text: JSON.stringify({ progress: ['sampled by the TypeScript client'] }) }
    };
});

async function call(name, args) {
    // callTool validates structuredContent against the output schema listTools cached, and
    // throws McpError(InvalidParams) when it does not match.
    const result = await client.callTool({ name, arguments: args });
    check(!result.isError, `${name} failed: ${JSON.stringify(result.content)}`);
    check(result.structuredContent !== undefined, `${name} returned no structuredContent`);
    check(client.getToolOutputValidator(name) !== undefined, `${name} has no output schema to validate against`);
    summary.tools[name] = (summary.tools[name] ?? 0) + 1;
    return result.structuredContent;
}

async function expectProtocolError(promise, what) {
    try {
        await promise;
    } catch (error) {
        check(error instanceof McpError && error.code === ErrorCode.InvalidParams,
              `${what}: expected -32602, got ${error}`);
        check(!/Traceback|Error executing/.test(error.message), `${what}: leaks internals: ${error.message}`);
        return error.message;
    }
    fail(`${what}: expected a protocol error, got a result`);
}

try {
    await client.connect(transport());
    const tools = (await client.listTools()).tools;
    for (const tool of tools) check(tool.outputSchema, `tool ${tool.name} has no outputSchema`);

    // The loop.
    const run = await call('start_run', { objective: 'Ship the TypeScript e2e', run_id: 'ts1',
                                          acceptance_criteria: ['all green'], pinned: ['node 22'] });
    check(run.run_id === 'ts1', 'start_run kept the run id');
    for (let i = 0; i < 3; i += 1) {
        const ack = await call('record_step', { run_id: 'ts1', tool: 'bash', input: { cmd: `step ${i}` },
                                                output: `ok ${i}`, idempotency_key: `k${i}` });
        check(ack.seq === i + 1, `record_step seq ${ack.seq}`);
    }
    const retried = await call('record_step', { run_id: 'ts1', tool: 'bash', input: { cmd: 'step 0' },
                                                output: 'ok 0', idempotency_key: 'k0' });
    check(retried.duplicate === true && retried.seq === 1, 'an idempotent retry answers the first step');
    const cp = await call('checkpoint', { run_id: 'ts1', progress: ['three steps'], next_actions: ['ship'],
                                          name: 'first', files: [{ path: 'notes/plan.md', content: '# plan\n' }] });
    await call('record_step', { run_id: 'ts1', tool: 'bash', output: 'later' });
    const distilled = await call('checkpoint', { run_id: 'ts1' });  // sampling, or rules with a note
    check(['sampling', 'rules'].includes(distilled.source), `checkpoint source ${distilled.source}`);
    const context = await call('rehydrate', { run_id: 'ts1', budget_tokens: 2000 });
    check(context.tokens <= 2000 && context.context.includes('three steps'), 'rehydrate within budget');
    await call('rehydrate', { run_id: 'ts1', checkpoint_id: cp.checkpoint_id });
    await call('list_runs', {});
    const updated = await call('update_run', { run_id: 'ts1', pinned: ['node 22', 'sdk 1.32'] });
    const batch = await call('propose_memory', { run_id: 'ts1', items: [
        { content: 'The TypeScript SDK validates structured content with ajv', kind: 'fact' }] });
    const committed = await call('commit_memory', { batch_id: batch.batch_id });
    const hits = await call('search_memory', { query: 'TypeScript SDK ajv' });
    check(hits.hits.length >= 1, 'search_memory finds the committed memory');
    const memoryId = hits.hits[0].memory_id;
    const found = await call('search_steps', { query: 'step', run_id: 'ts1', k: 5 });
    check(found.hits.length >= 1 && found.hits[0].run_id === 'ts1', 'search_steps finds the steps');
    const listed = await call('list_memories', { limit: 5 });
    check(listed.memories.some((m) => m.memory_id === memoryId), 'list_memories lists the memory');
    await call('start_run', { objective: 'a run to delete', run_id: 'ts2' });
    const deleted = await call('delete_run', { run_id: 'ts2' });
    check(deleted.run_id === 'ts2', 'delete_run deleted ts2');
    const doomed = await call('propose_memory', { items: [{ content: 'a memory to forget' }] });
    const doomedDone = await call('commit_memory', { batch_id: doomed.batch_id });
    const forgotten = await call('forget_memory', { memory_id: doomedDone.memory_ids['0'] });
    check(forgotten.forgotten === true, 'forget_memory forgot it');
    await call('update_run', { run_id: 'ts1', status: 'completed', expected_version: updated.version + 0 });

    // Every tool the server lists was called (a new tool needs a line above).
    const missing = tools.map((t) => t.name).filter((name) => !(name in summary.tools));
    check(missing.length === 0, `tools this client does not exercise yet: ${missing.join(', ')}`);

    // Bad arguments are tool errors, for every tool; an unknown tool is -32602.
    for (const tool of tools) {
        const result = await client.callTool({ name: tool.name, arguments: { no_such_field: 1 } });
        check(result.isError === true, `${tool.name} accepted a bogus argument`);
        const text = result.content?.[0]?.text ?? '';
        check(text.startsWith('invalid_argument:'), `${tool.name}: bad arguments answered ${text}`);
        summary.badArguments += 1;
    }
    await expectProtocolError(client.callTool({ name: 'no_such_tool', arguments: {} }), 'unknown tool');

    // Every resource template, filled with the ids the loop made, and every resource.
    const snapshot = await client.readResource({ uri: `snapshot://ts1/${cp.checkpoint_id}` });
    const files = JSON.parse(snapshot.contents[0].text).files;
    check(files.length === 1 && files[0].path === 'notes/plan.md', 'the snapshot holds the file');
    const values = { run_id: 'ts1', checkpoint_id: cp.checkpoint_id, memory_id: memoryId,
                     name: 'checkpoint', cursor: '0', offset: '0', limit: '2',
                     sha256: files[0].sha256 };
    for (const template of (await client.listResourceTemplates()).resourceTemplates) {
        const parsed = new UriTemplate(template.uriTemplate);
        const unknown = parsed.variableNames.filter((v) => !(v in values));
        check(unknown.length === 0, `template ${template.uriTemplate}: no value for ${unknown}`);
        const uri = parsed.expand(values);
        const read = await client.readResource({ uri });
        check(read.contents.length >= 1, `${uri} read nothing`);
        summary.templates += 1;
    }
    for (const resource of (await client.listResources()).resources) {
        const read = await client.readResource({ uri: resource.uri });
        check(read.contents.length >= 1, `${resource.uri} read nothing`);
        summary.resources += 1;
    }
    await expectProtocolError(client.readResource({ uri: 'run://no-such-run' }), 'unknown run resource');

    // Every prompt, with its required arguments; a missing one and an unknown prompt are -32602.
    const promptValues = { run_id: 'ts1', batch_id: committed.batch_id ?? batch.batch_id, budget_tokens: '1500' };
    for (const prompt of (await client.listPrompts()).prompts) {
        const args = {};
        for (const arg of prompt.arguments ?? []) {
            check(arg.name in promptValues || !arg.required, `prompt ${prompt.name}: no value for ${arg.name}`);
            if (arg.name in promptValues) args[arg.name] = promptValues[arg.name];
        }
        const got = await client.getPrompt({ name: prompt.name, arguments: args });
        check(got.messages.length >= 1, `prompt ${prompt.name} gave no message`);
        summary.prompts += 1;
        if ((prompt.arguments ?? []).some((a) => a.required)) {
            await expectProtocolError(client.getPrompt({ name: prompt.name, arguments: {} }),
                                      `prompt ${prompt.name} without its arguments`);
        }
    }
    await expectProtocolError(client.getPrompt({ name: 'no_such_prompt' }), 'unknown prompt');
    await client.close();
} catch (error) {
    fail(`${error?.stack ?? error}`);
}
process.stdout.write(JSON.stringify(summary) + '\n');
process.exit(0);
