// The checkout page in a real headless Chromium (issue 13), driven through
// playwright-core. crates/e2e/tests/browser.rs starts the stack (two API
// replicas, watcher, dispatcher, sandbox node), creates the payments and runs
// this with BROWSER_TEST_CONFIG (JSON, see `config` below); each check prints
// "ok:" or "FAIL:", and the exit status is 1 when any failed.
'use strict';

const fs = require('fs');
const path = require('path');

const modules = process.env.TRONPAY_NODE_MODULES;
const { chromium } = require(path.join(modules, 'playwright-core'));
const axeSource = fs.readFileSync(path.join(modules, 'axe-core', 'axe.min.js'), 'utf8');

// chromium: the browser binary; screenshots: a folder; sandbox: the node's
// base URL; solid_lag: blocks until final; redirect: the paid payment's
// redirect_url; pay, pending, nojs, expired, cancelled: checkout URLs (on
// the replica that applies nothing); missing: a checkout URL of no payment.
const config = JSON.parse(process.env.BROWSER_TEST_CONFIG);
const failures = [];

function check(condition, what) {
  if (condition) {
    console.log(`ok: ${what}`);
  } else {
    failures.push(what);
    console.log(`FAIL: ${what}`);
  }
}

async function post(url, body) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    throw new Error(`${url}: ${response.status} ${await response.text()}`);
  }
  return response.json();
}

const shot = (page, name) => page.screenshot({ path: path.join(config.screenshots, `${name}.png`), fullPage: true });
const state = (page) => page.getAttribute('#status', 'data-state');

/// Pays on the sandbox what the page asks, to the address it shows.
async function payAsShown(page) {
  const amount = (await page.textContent('#amount')).trim();
  const address = (await page.textContent('#address')).trim();
  check(/^\d+(\.\d{1,6})?$/.test(amount), `the amount is on the page (${amount})`);
  check(/^T[1-9A-HJ-NP-Za-km-z]{33}$/.test(address), `the address is on the page (${address})`);
  await post(`${config.sandbox}/sandbox/transfer`, { to: address, amount });
  await post(`${config.sandbox}/sandbox/mine`, { count: 1 });
}

/// axe-core on `url` (in a context that lets the test inject it past the
/// page's Content-Security-Policy, signed in with `storageState` when given);
/// serious or critical violations fail.
async function accessible(browser, url, name, storageState = undefined) {
  const context = await browser.newContext({ bypassCSP: true, storageState });
  const page = await context.newPage();
  await page.goto(url);
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(() => window.axe.run(document));
  const serious = result.violations
    .filter((violation) => violation.impact === 'serious' || violation.impact === 'critical')
    .map((violation) => `${violation.id}: ${violation.nodes.map((node) => node.target.join(' ')).join(', ')}`);
  check(serious.length === 0, `axe-core finds no serious violation on ${name} ${serious.join('; ')}`);
  await context.close();
}

async function buyerPaysAndThePageFollows(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US' });
  const page = await context.newPage();
  const violations = [];
  page.on('console', (message) => {
    if (message.type() === 'error') violations.push(message.text());
  });
  await page.goto(config.pay);
  check((await state(page)) === 'waiting', 'a new payment is waiting');
  check((await page.locator('svg').count()) === 1, 'the QR code is on the page');
  check(await page.locator('button.copy').first().isVisible(), 'the copy buttons show with JavaScript');
  await shot(page, 'checkout-waiting');
  // A marker a reload would wipe.
  await page.evaluate(() => { window.notReloaded = true; });

  await payAsShown(page);
  await page.waitForFunction(
    () => ['confirming', 'detected'].includes(document.getElementById('status').dataset.state),
    null,
    { timeout: 20000 },
  );
  check(true, `the page shows the transfer while it confirms: "${await page.textContent('#status')}"`);
  await shot(page, 'checkout-confirming');

  await post(`${config.sandbox}/sandbox/mine`, { count: config.solid_lag });
  await page.waitForFunction(() => document.getElementById('status').dataset.state === 'paid', null, { timeout: 30000 });
  check(await page.evaluate(() => window.notReloaded === true), 'the page turned to paid without reloading');
  check((await page.textContent('#status')).includes('Paid'), 'it says paid');
  check(!(await page.locator('#address').isVisible()), 'and no longer shows an address to pay to');
  await shot(page, 'checkout-paid');
  // (The shop's page is not ours: its errors do not count.)
  check(violations.length === 0, `no console errors (CSP, script, missing file) ${violations.join('; ')}`);
  page.removeAllListeners('console');
  await page.waitForURL((url) => url.href.startsWith(config.redirect), { timeout: 15000 });
  check(true, 'then it took the buyer back to the shop');
  await context.close();
}

async function eachLanguage(browser) {
  const context = await browser.newContext();
  const page = await context.newPage();
  for (const [lang, htmlLang, text] of [
    ['en', 'en', 'Amount to pay'],
    ['zh', 'zh-CN', '应付金额'],
    ['ru', 'ru', 'Сумма к оплате'],
    ['es', 'es', 'Importe a pagar'],
  ]) {
    await page.goto(`${config.pending}?lang=${lang}`);
    const shown = await page.textContent('body');
    check(
      (await page.getAttribute('html', 'lang')) === htmlLang && shown.includes(text),
      `the page in ${htmlLang}`,
    );
    await shot(page, `checkout-${lang}`);
  }
  // By Accept-Language, too.
  const spanish = await browser.newContext({ locale: 'es-ES' });
  const español = await spanish.newPage();
  await español.goto(config.pending);
  check((await español.getAttribute('html', 'lang')) === 'es', 'Accept-Language picks Español');
  await spanish.close();
  await context.close();
}

async function onAPhone(browser) {
  const context = await browser.newContext({
    viewport: { width: 360, height: 740 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  const page = await context.newPage();
  await page.goto(config.pending);
  const widths = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  check(widths[0] <= widths[1], `no horizontal scroll on a 360-px phone (${widths[0]} ≤ ${widths[1]})`);
  await shot(page, 'checkout-phone');
  await context.close();
}

async function withoutJavaScript(browser) {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(config.nojs);
  check((await state(page)) === 'waiting', 'without JavaScript the status shows');
  check(!(await page.locator('button.copy').first().isVisible()), 'without JavaScript no dead copy buttons');
  await payAsShown(page);
  await post(`${config.sandbox}/sandbox/mine`, { count: config.solid_lag });
  // The page refreshes itself (every few seconds) and shows the new status.
  const deadline = Date.now() + 40000;
  let seen = await state(page);
  while (seen !== 'paid' && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    seen = await state(page).catch(() => null);
  }
  check(seen === 'paid', 'without JavaScript a refresh shows paid');
  await shot(page, 'checkout-no-javascript');
  await context.close();
}

async function endedAndUnknown(browser) {
  const context = await browser.newContext();
  const page = await context.newPage();
  for (const [name, url, wanted, text] of [
    ['an expired', config.expired, 'expired', 'has expired'],
    ['a cancelled', config.cancelled, 'cancelled', 'was cancelled'],
  ]) {
    await page.goto(url);
    check(
      (await state(page)) === wanted && (await page.textContent('#status')).includes(text),
      `${name} payment says so`,
    );
    check((await page.locator('svg').count()) === 0, `${name} payment shows no QR code to pay to`);
    await shot(page, `checkout-${wanted}`);
  }
  const answer = await page.goto(config.missing);
  check(answer.status() === 404 && (await page.textContent('h1')).includes('not found'), 'an unknown id is a friendly 404 page');
  await shot(page, 'checkout-not-found');
  await context.close();
}

/// The operator dashboard: sign-in (a wrong password refused), the
/// overview, a post without the CSRF token refused, finding a payment and
/// cancelling it from its page, assigning a late transfer to a payment,
/// retrying a dead delivery, creating an API key (shown once, it works) and
/// revoking it (refused), the settings (the XPUB not shown whole); axe-core
/// on the dashboard's pages.
async function dashboard(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${config.admin}/admin`);
  check(page.url().endsWith('/admin/sign-in'), 'the dashboard asks to sign in first');
  await page.fill('#name', config.operator);
  await page.fill('#password', 'not the password at all');
  await page.click('button[type=submit]');
  check((await page.textContent('main')).includes('Wrong name or password.'), 'a wrong password is refused');
  await shot(page, 'dashboard-sign-in');
  await page.fill('#name', config.operator);
  await page.fill('#password', config.password);
  await page.click('button[type=submit]');
  await page.waitForURL((url) => url.pathname === '/admin');
  check((await page.textContent('h1')).includes('Overview'), 'signed in: the overview');
  await shot(page, 'dashboard-overview');

  // A form posted without the session's CSRF token (as a forged page would).
  const forged = await context.request.post(`${config.admin}/admin/payments/${config.dashboard_payment}/cancel`, {
    form: { csrf: 'forged', reason: 'forged' },
    maxRedirects: 0,
  });
  check(forged.status() === 403, `a post without the CSRF token is refused (${forged.status()})`);

  await page.click('text=Payments');
  await page.fill('#q', config.dashboard_order);
  await page.click('button:has-text("Search")');
  await page.click(`a:has-text("${config.dashboard_order}")`);
  check((await page.textContent('#payment-status')).trim() === 'pending', 'the payment is found, pending');
  await shot(page, 'dashboard-payment');
  await page.fill('#reason', 'cancelled in the browser test');
  await page.click('button:has-text("Cancel this payment")');
  await page.waitForURL((url) => url.search.includes('done=cancelled'));
  check(
    (await page.textContent('#payment-status')).trim() === 'failed' &&
      (await page.textContent('main')).includes(`Payment cancelled by operator ${config.operator}: cancelled in the browser test`),
    'cancelled from the dashboard, the operator named in the audit trail',
  );
  // A late transfer assigned to a pending payment, with the confirmation.
  await page.click('text=Transfers');
  const form = page.locator(`form[action*="${config.late_txid}"]`);
  check((await form.count()) === 1, 'the late transfer is listed with an assign form');
  await form.locator('input[name=payment_id]').fill(config.assign_to);
  await form.locator('input[name=confirm]').check();
  await shot(page, 'dashboard-transfers');
  await form.locator('button').click();
  await page.waitForURL((url) => url.pathname === `/admin/payments/${config.assign_to}`);
  check(
    (await page.textContent('#payment-status')).trim() === 'completed' &&
      (await page.textContent('main')).includes(`assigned by operator ${config.operator}`),
    'the assigned transfer completed the payment, the operator named in the audit trail',
  );

  const paymentPage = page.url();

  // A dead delivery retried from the webhooks page.
  await page.click('nav a[href="/admin/webhooks"]');
  const dead = page.locator('#dead tr', { hasText: config.dead_payment });
  check((await dead.count()) === 1, 'the dead delivery is listed');
  check((await page.textContent('#failures')).includes('HTTP 500'), 'its failed attempts show the receiver\'s status');
  await shot(page, 'dashboard-webhooks');
  await dead.locator('button:has-text("Retry")').click();
  await page.waitForURL((url) => url.search.includes('retried=1'));
  check((await page.textContent('main')).includes('1 delivery is queued again'), 'the retry is queued');

  // An API key: created, shown once, accepted; revoked, refused.
  await page.click('nav a[href="/admin/keys"]');
  await page.fill('#key-name', 'browser test key');
  await page.check('input[name=scope][value="payments:read"]');
  await page.click('button:has-text("Create key")');
  const key = await page.inputValue('#new-key');
  check(/^tpk_[0-9a-f]+_/.test(key), 'the new key is shown');
  await shot(page, 'dashboard-keys');
  const withKey = () =>
    context.request.get(`${config.admin}/v1/payments?limit=1`, { headers: { Authorization: `Bearer ${key}` } });
  check((await withKey()).status() === 200, 'the new key works');
  await page.goto(`${config.admin}/admin/keys`);
  check(!(await page.content()).includes(key), 'the key is shown only once');
  const prefix = key.split('_')[1];
  await page.click(`button[aria-label="Revoke tpk_${prefix}"]`);
  await page.waitForURL((url) => url.search.includes('done=revoked'));
  check((await page.textContent('#keys')).includes('revoked'), 'the key is listed as revoked');
  check((await withKey()).status() === 401, 'the revoked key is refused');

  // The settings, the account key shortened.
  await page.click('nav a[href="/admin/settings"]');
  const settings = await page.textContent('#api-settings');
  check(settings.includes('ADDRESS_MODE') && settings.includes('xpub'), 'the settings are listed');
  check(!(await page.content()).includes(config.xpub), 'the XPUB is not shown whole');
  await shot(page, 'dashboard-settings');

  // axe-core on the dashboard's pages, signed in.
  const state = await context.storageState();
  await accessible(browser, `${config.admin}/admin`, 'the overview', state);
  await accessible(browser, paymentPage, "a payment's page", state);
  await accessible(browser, `${config.admin}/admin/transfers?view=all`, 'the transfers page', state);
  await accessible(browser, `${config.admin}/admin/webhooks`, 'the webhooks page', state);
  await accessible(browser, `${config.admin}/admin/keys`, 'the API keys page', state);
  await accessible(browser, `${config.admin}/admin/settings`, 'the settings page', state);
  await context.close();
}

(async () => {
  fs.mkdirSync(config.screenshots, { recursive: true });
  const browser = await chromium.launch({ executablePath: config.chromium, args: ['--no-sandbox'] });
  try {
    await buyerPaysAndThePageFollows(browser);
    await eachLanguage(browser);
    await onAPhone(browser);
    await withoutJavaScript(browser);
    await endedAndUnknown(browser);
    await accessible(browser, config.pending, 'the checkout page');
    await accessible(browser, config.missing, 'the 404 page');
    await dashboard(browser);
  } catch (error) {
    failures.push(String(error && error.stack ? error.stack : error));
    console.log(`FAIL: ${error && error.stack ? error.stack : error}`);
  } finally {
    await browser.close();
  }
  console.log(failures.length === 0 ? 'all browser checks passed' : `${failures.length} browser checks failed`);
  process.exit(failures.length === 0 ? 0 : 1);
})();
