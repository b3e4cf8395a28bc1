// Browser checks of issue 14, run by crates/switchboard/tests/{tls,admin_page}.rs (not by
// `node --test`: the file name does not match its patterns). Prints one JSON line of what it saw.
//
// Environment:
//   OPS_MODE     `https-client`: the web client over https and wss, the server's certificate
//                pinned by its key (OPS_SPKI); `admin`: /admin with and without the API key
//   OPS_URL      the server (https://localhost:PORT or http://127.0.0.1:PORT)
//   OPS_SPKI     base64 SHA-256 of the server key's SubjectPublicKeyInfo (https-client)
//   OPS_API_KEY  the API key (admin)
//   CHROMIUM     the browser (default /usr/bin/chromium)

import { chromium } from 'playwright-core';
import { register, connectedNode, WAIT_MS } from './harness.mjs';

const mode = process.env.OPS_MODE;
const url = process.env.OPS_URL;
const args = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];
if (process.env.OPS_SPKI) {
  // Trusts exactly this server key (as a pinned CA would), not every certificate.
  args.push(`--ignore-certificate-errors-spki-list=${process.env.OPS_SPKI}`);
}
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args });
const result = {};
try {
  if (mode === 'https-client') {
    const context = await browser.newContext();
    context.setDefaultTimeout(WAIT_MS);
    const page = await context.newPage();
    const problems = [];
    page.on('pageerror', (error) => problems.push(error.message));
    await register(page, url, 'tls-user');
    const { url: socketUrl } = await connectedNode(page);
    result.pageUrl = page.url();
    result.socketUrl = socketUrl;
    result.problems = problems;
  } else if (mode === 'admin') {
    const anonymous = await browser.newContext();
    // Headless chromium cannot ask for the password: a 401 with a Basic challenge fails the
    // navigation (net::ERR_INVALID_AUTH_CREDENTIALS) instead of showing anything.
    try {
      const refused = await (await anonymous.newPage()).goto(`${url}/admin`);
      result.withoutKey = refused.status();
    } catch (error) {
      result.withoutKey = /ERR_INVALID_AUTH_CREDENTIALS/.test(error.message) ? 'auth required' : error.message;
    }
    const context = await browser.newContext({ httpCredentials: { username: 'admin', password: process.env.OPS_API_KEY } });
    context.setDefaultTimeout(WAIT_MS);
    const page = await context.newPage();
    const answer = await page.goto(`${url}/admin`);
    result.withKey = answer.status();
    const rows = async (id) => page.locator(`#${id} tr`).evaluateAll((trs) =>
      trs.slice(1).map((tr) => Array.from(tr.children).map((cell) => cell.textContent.trim())));
    result.title = await page.title();
    result.nodes = await rows('nodes');
    result.connections = await rows('connections');
    result.rates = await rows('rates');
    result.rooms = await rows('rooms');
    result.errors = await rows('errors');
  } else {
    throw new Error(`unknown OPS_MODE ${mode}`);
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
