// Runs the authorization code flow against an idserver provider with
// openid-client, signing in through the HTML login form like a browser.
//
// Input (JSON on standard input):
//   { "issuer": "...", "redirect_uri": "...", "username": "...",
//     "password": "...", "clients": [{ "id": "...", "secret": "...",
//     "jwks": "jwks" | "jwks_rsaonly" }] }
// Output (JSON on standard output): one result per client, either
//   { "ok": true, "alg", "kid", "claims", "userinfo", "refreshed_sub" } or
//   { "ok": false, "error": "..." }.
//
// TLS: the test passes its certificate in NODE_EXTRA_CA_CERTS.

import * as client from "openid-client";

const SCOPE = "openid profile email groups";

async function readInput() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

// A browser reduced to what the login form needs: cookies and redirects.
class Browser {
  constructor() {
    this.cookies = new Map();
  }

  remember(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const index = pair.indexOf("=");
      const name = pair.slice(0, index).trim();
      const value = pair.slice(index + 1).trim();
      if (value === "") this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  async request(url, options = {}) {
    const headers = new Headers(options.headers || {});
    if (this.cookies.size > 0) {
      headers.set(
        "cookie",
        [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; "),
      );
    }
    const response = await fetch(url, { ...options, headers, redirect: "manual" });
    this.remember(response);
    return response;
  }

  // Follows redirects on the provider; returns the first URL outside it, or
  // the final response.
  async follow(response, origin) {
    while (response.status >= 300 && response.status < 400) {
      const location = new URL(response.headers.get("location"), response.url || origin);
      if (location.origin !== origin) return location;
      response = await this.request(location);
    }
    return response;
  }
}

function hiddenFields(html) {
  const fields = {};
  for (const match of html.matchAll(/<input[^>]*type="hidden"[^>]*>/g)) {
    const name = /name="([^"]*)"/.exec(match[0]);
    const value = /value="([^"]*)"/.exec(match[0]);
    if (name) fields[name[1]] = decodeEntities(value ? value[1] : "");
  }
  return fields;
}

function decodeEntities(text) {
  return text
    .replaceAll("&quot;", '"')
    .replaceAll("&#x27;", "'")
    .replaceAll("&lt;", "<")
    .replaceAll("&gt;", ">")
    .replaceAll("&amp;", "&");
}

async function signIn(url, input) {
  const browser = new Browser();
  const origin = url.origin;
  let page = await browser.follow(await browser.request(url), origin);
  if (page instanceof URL) return page;
  const fields = hiddenFields(await page.text());
  const body = new URLSearchParams({
    ...fields,
    username: input.username,
    password: input.password,
  });
  const posted = await browser.request(new URL("/login", origin), {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body,
  });
  const result = await browser.follow(posted, origin);
  if (!(result instanceof URL)) {
    throw new Error(`login did not return to the client: HTTP ${result.status}`);
  }
  return result;
}

function header(jwt) {
  return JSON.parse(Buffer.from(jwt.split(".")[0], "base64url").toString("utf8"));
}

async function run(input, spec) {
  const issuer = new URL(input.issuer);
  let config = await client.discovery(
    issuer,
    spec.id,
    undefined,
    client.ClientSecretBasic(spec.secret),
  );
  if (spec.jwks === "jwks_rsaonly") {
    const metadata = {
      ...config.serverMetadata(),
      jwks_uri: `${input.issuer}/jwks_rsaonly`,
    };
    config = new client.Configuration(
      metadata,
      spec.id,
      undefined,
      client.ClientSecretBasic(spec.secret),
    );
  }
  // Check the ID token signatures against the JWKS, which openid-client
  // skips by default for tokens received over TLS.
  client.enableNonRepudiationChecks(config);

  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: input.redirect_uri,
    scope: SCOPE,
    code_challenge: challenge,
    code_challenge_method: "S256",
    state,
    nonce,
  });

  const callback = await signIn(url, input);
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  const { alg, kid } = header(tokens.id_token);
  return {
    ok: true,
    alg,
    kid,
    claims,
    userinfo,
    refreshed_sub: refreshed.claims().sub,
  };
}

const input = await readInput();
const results = [];
for (const spec of input.clients) {
  try {
    results.push(await run(input, spec));
  } catch (error) {
    const cause = error.cause ? ` (${error.cause.code || error.cause.message})` : "";
    results.push({ ok: false, error: `${error.name}: ${error.message}${cause}` });
  }
}
process.stdout.write(JSON.stringify(results) + "\n");
