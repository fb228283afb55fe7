// The TypeScript MCP SDK's client against an OAuth-protected server, with nothing but the server's
// URL and a client of the identity provider: it is refused (401), discovers the resource metadata
// and the authorization server from the challenge, gets a token with the client_credentials grant
// (for the resource the metadata names), then lists the tools and calls `ask`.
// argv: <server /mcp URL> <issuer> <client_id> <client_secret> <prompt>; prints one JSON line.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';

const [url, issuer, clientId, clientSecret, prompt] = process.argv.slice(2);
const authProvider = new ClientCredentialsProvider({ clientId, clientSecret, scope: 'mcp', expectedIssuer: issuer });
const client = new Client({ name: 'claude-mcp-ts-test', version: '1.0.0' });
await client.connect(new StreamableHTTPClientTransport(new URL(url), { authProvider }));
const tools = (await client.listTools()).tools.map((tool) => tool.name);
const answer = await client.callTool({ name: 'ask', arguments: { prompt } });
const token = authProvider.tokens()?.access_token ?? '';
const audience = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString() || '{}').aud;
process.stdout.write(`${JSON.stringify({ tools, answer: answer.structuredContent, audience })}\n`);
await client.close();
