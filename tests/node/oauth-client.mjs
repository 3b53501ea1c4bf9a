// The TypeScript SDK's OAuth-capable streamable-HTTP transport against mcp-checkpoint:
//
//   node oauth-client.mjs static URL
//       the server has static tokens only: a client without credentials stops with a 401,
//       and an OAuth client (dynamic registration, as Claude Code and VS Code do) stops
//       with the server's JSON OAuth error, never a parse error;
//   node oauth-client.mjs issuer URL CLIENT_ID CLIENT_SECRET
//       the server verifies JWTs of an issuer: the client finds the issuer through the
//       protected-resource metadata, gets a token (client_credentials) and runs tools.
//
// Prints one JSON line on stdout; exits 1 on failure (message on stderr).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [mode, url, clientId, clientSecret] = process.argv.slice(2);

function fail(message) {
    process.stderr.write(`FAIL: ${message}\n`);
    process.exit(1);
}

/** An interactive OAuth client's provider: registers dynamically, then would open a browser. */
class InteractiveProvider {
    constructor() { this.info = undefined; this.saved = undefined; }
    get redirectUrl() { return 'http://127.0.0.1:9/callback'; }
    get clientMetadata() {
        return { client_name: 'e2e', redirect_uris: [this.redirectUrl], grant_types: ['authorization_code'],
                 response_types: ['code'], token_endpoint_auth_method: 'none' };
    }
    clientInformation() { return this.info; }
    saveClientInformation(info) { this.info = info; }
    tokens() { return this.saved; }
    saveTokens(tokens) { this.saved = tokens; }
    redirectToAuthorization() { fail('the client was sent to a browser sign-in the server cannot finish'); }
    saveCodeVerifier() {}
    codeVerifier() { return 'v'; }
}

async function connectError(options) {
    const client = new Client({ name: 'oauth-e2e', version: '1.0.0' });
    try {
        await client.connect(new StreamableHTTPClientTransport(new URL(url), options));
    } catch (error) {
        return error;
    }
    fail('connected without credentials');
}

if (mode === 'static') {
    const bare = await connectError({});
    const oauth = await connectError({ authProvider: new InteractiveProvider() });
    for (const error of [bare, oauth]) {
        if (/SyntaxError|Invalid OAuth error response|not valid JSON/.test(String(error))) {
            fail(`a parse error: ${error}`);
        }
    }
    process.stdout.write(JSON.stringify({
        bare: { name: bare.constructor.name, code: bare.code ?? null, message: bare.message },
        oauth: { name: oauth.constructor.name, message: oauth.message }
    }) + '\n');
} else if (mode === 'issuer') {
    const provider = new ClientCredentialsProvider({ clientId, clientSecret, scope: 'read write' });
    const client = new Client({ name: 'oauth-e2e', version: '1.0.0' });
    try {
        await client.connect(new StreamableHTTPClientTransport(new URL(url), { authProvider: provider }));
        const started = await client.callTool({ name: 'start_run', arguments: { objective: 'oauth', run_id: 'o1' } });
        if (started.isError) fail(`start_run: ${JSON.stringify(started.content)}`);
        const runs = await client.callTool({ name: 'list_runs', arguments: {} });
        await client.close();
        process.stdout.write(JSON.stringify({
            runs: runs.structuredContent.runs.map((r) => r.run_id),
            tokenType: provider.tokens()?.token_type ?? null
        }) + '\n');
    } catch (error) {
        fail(`${error?.stack ?? error}`);
    }
} else {
    fail(`unknown mode ${mode}`);
}
process.exit(0);
