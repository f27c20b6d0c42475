// A real OpenID Connect provider for rplace's login tests: the `oidc-provider` package
// with its development interactions (a login form that takes any username with any
// password, then a consent form). Started by crates/testsupport/src/oidc.rs and by
// tests/browser/login.test.mjs; not for production.
//
// Usage: node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI[,REDIRECT_URI...]
// Prints "listening <issuer>" on stdout once it accepts connections.
//
// The username typed at the login prompt becomes the subject; the account's e-mail is
// `<username>@example.test` (verified), so tests can name admins by either.

import Provider from 'oidc-provider';

const [port, clientId, clientSecret, redirects] = process.argv.slice(2);
if (!port || !clientId || !clientSecret || !redirects) {
  console.error('usage: node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI[,...]');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirects.split(','),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  // Any username is an account; its claims follow from it.
  async findAccount(_ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          email: `${sub}@example.test`,
          email_verified: true,
          preferred_username: sub,
          name: sub,
        };
      },
    };
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  // The scopes' claims in the ID token itself, as most real providers do for code flow.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  // Short lifetimes: a test provider.
  ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 600, Grant: 600 },
});
// The dev interactions warn on every start; the tests do not need the noise.
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

const server = provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
