// A real OpenID provider for the OAuth tests: oidc-provider (OpenID-certified), configured from a
// JSON file (argv[2]): { keys: [private JWKs], clients: [{client_id, client_secret, tenant, scope}],
// scope: "<scopes>" }. It issues JWT access tokens through the client_credentials grant for any
// resource indicator asked for (RFC 8707; the token's audience), each carrying its client's
// `tenant` claim; for a resource whose URL ends in `/opaque`, an opaque token that only the client
// `resource-server` may introspect (RFC 7662, at /token/introspection). It listens on 127.0.0.1 (an ephemeral port), prints `listening <issuer>` on stdout once
// ready, and `POST /__rotate` with `{keys: [...]}` replaces its signing keys (a key rotation).
import { readFileSync } from 'node:fs';
import http from 'node:http';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const tenantOf = Object.fromEntries(config.clients.map((c) => [c.client_id, c.tenant]));
const scopes = config.scope.split(' ');

function provider(issuer, keys) {
  return new Provider(issuer, {
    clients: config.clients.map(({ client_id, client_secret, scope }) => ({
      client_id,
      client_secret,
      scope,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
    })),
    jwks: { keys },
    scopes,
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true, allowedPolicy: async (ctx, client) => client.clientId === 'resource-server' },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, indicator) => ({
          scope: config.scope,
          audience: indicator,
          accessTokenTTL: 600,
          accessTokenFormat: indicator.endsWith('/opaque') ? 'opaque' : 'jwt', // opaque: checked by introspection
        }),
      },
    },
    extraTokenClaims: (ctx, token) => (tenantOf[token.clientId] ? { tenant: tenantOf[token.clientId] } : undefined),
  });
}

let current;
const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/__rotate') {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      current = provider(current.issuer, JSON.parse(body).keys);
      res.writeHead(204).end();
    });
    return;
  }
  current.callback()(req, res);
});
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  current = provider(issuer, config.keys);
  process.stdout.write(`listening ${issuer}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
