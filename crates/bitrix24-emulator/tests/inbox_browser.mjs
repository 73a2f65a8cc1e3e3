// The web inbox in a real browser: every attach block renders, no injected script runs,
// a confirm button answers through the page, and a new notification arrives over the event
// stream without a reload. Started by inbox_browser.rs; usable by hand against any emulator.
//
// Usage: node inbox_browser.mjs INBOX_URL CONFIRM_ID SCREENSHOT_PATH
// Env: OINT_PLAYWRIGHT_NODE_MODULES (dir holding playwright-core), OINT_INBOX_WEBHOOK (REST
// webhook URL that may notify the inbox's user; kept out of argv and output as it holds the
// secret), OINT_INBOX_USER (user whose inbox is open), OINT_CHROMIUM (default /usr/bin/chromium).
import { createRequire } from "node:module";
import path from "node:path";

function fail(message) {
  console.error(`inbox_browser: ${message}`);
  process.exit(1);
}

const [inboxUrl, confirmId, screenshot] = process.argv.slice(2);
if (!inboxUrl || !confirmId || !screenshot) fail("usage: node inbox_browser.mjs INBOX_URL CONFIRM_ID SCREENSHOT_PATH");
const modules = process.env.OINT_PLAYWRIGHT_NODE_MODULES;
if (!modules) fail("OINT_PLAYWRIGHT_NODE_MODULES is not set; point it at a node_modules with playwright-core");
const webhook = process.env.OINT_INBOX_WEBHOOK;
if (!webhook) fail("OINT_INBOX_WEBHOOK is not set; give the REST webhook URL ending in /");
const user = Number(process.env.OINT_INBOX_USER || "1");

const require = createRequire(path.join(path.resolve(modules), "index.js"));
const { chromium } = require("playwright-core");

const browser = await chromium.launch({
  executablePath: process.env.OINT_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let code = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1400 } });
  const dialogs = [];
  page.on("dialog", (d) => { dialogs.push(`${d.type()}: ${d.message()}`); d.dismiss().catch(() => {}); });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  // Remote images stay placeholders: the page must fetch nothing beyond the emulator.
  const origin = new URL(inboxUrl).origin;
  const foreign = [];
  page.on("request", (r) => { if (new URL(r.url()).origin !== origin) foreign.push(r.url()); });

  await page.goto(`${inboxUrl}/?user=${user}`, { waitUntil: "load" });
  await page.waitForSelector('#live[data-live="on"]', { timeout: 10000 })
    .catch(() => { throw new Error("event stream never became live (#live[data-live=on])"); });

  const expected = {
    "USER block": '[data-block="user"]',
    "LINK block": '[data-block="link"]',
    "MESSAGE block": '[data-block="message"]',
    "GRID block": '[data-block="grid"]',
    "IMAGE block": '[data-block="image"] img.attach-image',
    "remote image placeholder": '[data-block="image"] [data-remote-image]',
    "FILE block": '[data-block="file"] .file-size',
    "DELIMITER block": 'hr[data-block="delimiter"]',
    "colour stripe": "[data-attach][data-stripe]",
    "BB-code bold": "[data-block=\"message\"] b",
    "confirm buttons": `#n${confirmId} [data-confirm] button[data-action="confirm"]`,
  };
  for (const [what, selector] of Object.entries(expected)) {
    if ((await page.locator(selector).count()) === 0) throw new Error(`${what} missing: no element matches ${selector}`);
  }
  // The page's script turns data-stripe into a style; an unstyled stripe means it did not run.
  const stripe = await page.locator("[data-attach][data-stripe]").first()
    .evaluate((el) => getComputedStyle(el).borderLeftColor);
  if (stripe !== "rgb(200, 16, 46)") throw new Error(`colour stripe #c8102e not applied: border-left-color is ${stripe}`);

  const checkNoScript = async (when) => {
    const xss = await page.evaluate(() => window.__xss);
    if (xss !== undefined) throw new Error(`injected script ran ${when}: window.__xss = ${xss}`);
    if (dialogs.length) throw new Error(`dialog opened ${when}: ${dialogs.join("; ")}`);
    // The CSP would stop an inline handler from running; escaping must keep it out of the DOM.
    const injected = await page.locator("[onerror], script:not([src])").count();
    if (injected) throw new Error(`${injected} injected element(s) (onerror attribute or inline script) ${when}`);
    const bad = await page.locator('a[href^="javascript:" i], a[href^="data:" i]').count();
    if (bad) throw new Error(`${bad} link(s) with a javascript:/data: href ${when}`);
  };
  await checkNoScript("on load");

  await page.locator(`#n${confirmId} button[data-action="confirm"]`).first().click();
  await page.waitForSelector(`#n${confirmId}`, { state: "detached", timeout: 10000 })
    .catch(() => { throw new Error(`confirm notification #n${confirmId} still shown 10 s after its button was clicked`); });
  await page.waitForSelector('#toast:has-text("Accept")', { timeout: 10000 })
    .catch(() => { throw new Error("no toast naming the chosen button (Accept) after the confirm"); });

  const marker = `live-${Date.now()}`;
  const res = await fetch(`${webhook}im.notify.personal.add`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ USER_ID: user, MESSAGE: `Arrived ${marker}` }),
  });
  const body = await res.json();
  if (!body.result) throw new Error(`im.notify.personal.add failed: HTTP ${res.status} ${body.error || ""}`);
  await page.waitForSelector(`[data-notification="${body.result}"] [data-text]:has-text("${marker}")`, { timeout: 10000 })
    .catch(() => { throw new Error(`new notification ${body.result} did not appear within 10 s without a reload`); });

  await checkNoScript("after the updates");
  if (foreign.length) throw new Error(`the page fetched beyond the emulator: ${foreign.join(", ")}`);
  if (pageErrors.length) throw new Error(`script errors on the page: ${pageErrors.join("; ")}`);
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log("OK");
} catch (e) {
  console.error(`inbox_browser: ${e.message}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
