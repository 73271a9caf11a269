// A real OpenID provider for the OAuth sign-in suite (tests/tests/oauth_sign_in.rs): npm
// `oidc-provider` (the certified Node implementation) on a free loopback port, with one
// confidential client whose redirect URIs the test names. It stops when its stdin closes.
//
// The provider is unchanged; only the login screen, which every deployment writes itself, is
// automatic here: the interaction signs in as the account the test last PUT to
// `/test/account` (its claims: sub, email, email_verified, name), or, when that body says
// `"deny": true`, answers the sign-in with access_denied, as a user pressing "Cancel" would.
//
// Usage: node provider.mjs --modules DIR --client-id ID --client-secret S
//        [--access-token-ttl SECONDS] REDIRECT_URI...
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  options: {
    modules: { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'access-token-ttl': { type: 'string', default: '3600' },
  },
  allowPositionals: true,
});
const { default: Provider } = await import(pathToFileURL(path.join(values.modules, 'oidc-provider/lib/index.js')));

const accounts = new Map();
let current = null;

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: values['client-id'],
    client_secret: values['client-secret'],
    redirect_uris: positionals,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'picture'] },
  async findAccount(_ctx, id) {
    const claims = accounts.get(id);
    return claims && { accountId: id, claims: async () => ({ ...claims, sub: id }) };
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  features: { devInteractions: { enabled: false } },
  // Connected accounts keep a refresh token whatever the scope asked for.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: { AccessToken: Number(values['access-token-ttl']) },
  cookies: { keys: ['stack-edge-test-cookie-key'] },
  pkce: { required: () => true },
});

/** The login screen, automatic: the account the test chose, or a refusal. */
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (!current || current.deny) {
    const result = { error: 'access_denied', error_description: 'The user refused the sign-in.' };
    return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  }
  if (details.prompt.name === 'login') {
    accounts.set(current.sub, current);
    return provider.interactionFinished(req, res, { login: { accountId: current.sub } }, { mergeWithLastSubmission: false });
  }
  const grant = new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.method === 'PUT' && req.url === '/test/account') {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      current = JSON.parse(body);
      res.writeHead(204).end();
    });
  } else if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((e) => {
      console.error(e);
      res.writeHead(500).end(String(e));
    });
  } else {
    callback(req, res);
  }
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
console.log(`listening on ${issuer}`);
