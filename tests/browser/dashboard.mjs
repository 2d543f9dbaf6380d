// Loads the dashboard of a running pipeline in headless Chromium and checks
// that it is live: a block shows up as proving, the same block later shows
// as proved with its proving time and size, and the prover's numbers fill
// in. Run by tests/dashboard_browser.rs:
//
//   node dashboard.mjs URL SCREENSHOT.png
//
// Exits 0 when every check held, 1 with one line saying which did not.
// Debian's chromium is used (CHROMIUM, default /usr/bin/chromium): no
// browser is downloaded.
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error("usage: node dashboard.mjs URL SCREENSHOT.png");
  process.exit(2);
}
// Deadlock guards, never performance expectations.
const STEP_TIMEOUT_MS = 90_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // Without the networking flags Chromium keeps calling Google's hosts,
  // which this sandbox refuses; --no-sandbox because tests may run as root.
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

async function check(what, action) {
  try {
    return await action();
  } catch (error) {
    throw new Error(`${what}: ${error.message.split("\n")[0]}`);
  }
}

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await check(`loading ${url}`, () => page.goto(url, { timeout: STEP_TIMEOUT_MS }));

  // 1. A block appears while its prover is at work.
  const proving = await check("no block was ever shown as proving", () =>
    page.waitForSelector('td.cell[data-status="proving"]', { timeout: STEP_TIMEOUT_MS }));
  const block = await proving.getAttribute("data-block");
  const prover = await proving.getAttribute("data-prover");
  console.log(`seen proving: block ${block} by ${prover}`);

  // 2. The same block changes status to proved, with time and size.
  const cell = `td.cell[data-block="${block}"][data-prover="${prover}"]`;
  await check(`block ${block} never changed from proving to proved`, () =>
    page.waitForSelector(`${cell}[data-status="proved"]`, { timeout: STEP_TIMEOUT_MS }));
  const text = await page.textContent(cell);
  if (!/^proved \d+(\.\d)? s · \d+(\.\d+)? (B|KiB|MiB)$/.test(text)) {
    throw new Error(`block ${block}'s proved cell reads "${text}", not "proved <time> · <size>"`);
  }
  console.log(`seen proved: block ${block}: ${text}`);

  // 3. The prover's numbers: every block so far was proved, none failed.
  const rate = `#provers tr[data-prover="${prover}"] td[data-stat="success_rate"]`;
  await check(`${prover}'s success rate never read 100%`, () =>
    page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "100%", rate,
      { timeout: STEP_TIMEOUT_MS }));

  // A few more proofs make a screenshot worth looking at.
  await check("fewer than 8 proved cells ever shown", () =>
    page.waitForFunction(() => document.querySelectorAll('td.cell[data-status="proved"]').length >= 8,
      null, { timeout: STEP_TIMEOUT_MS }));
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`screenshot: ${screenshot}`);
} catch (error) {
  console.log(`dashboard check failed: ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
