// Drives the web app in Debian's Chromium (headless, through playwright-core) against a real
// fabd, fab-node and virtual printers that tests/web.rs started: the designer's whole flow, a
// broken STL, another designer, the operator's fleet and the admin's tokens. Reads its setup
// from the JSON file named on the command line, saves a screenshot per step into its
// `screenshots` directory, prints each path, and exits non-zero on the first failed check.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const origin = new URL(cfg.url).origin;
const shots = [];
const strays = [];
let step = 0;

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function shot(page, name) {
  const path = join(cfg.screenshots, `${String(++step).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  shots.push(path);
  console.log(`SCREENSHOT ${path}`);
}

async function newPage(browser, viewport = { width: 1280, height: 900 }) {
  const ctx = await browser.newContext({ viewport });
  const page = await ctx.newPage();
  page.setDefaultTimeout(cfg.timeoutMs ?? 30000);
  // Nothing may leave the machine: every request goes to the fabd that served the page.
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith(origin) && !u.startsWith("data:") && !u.startsWith("blob:")) strays.push(u);
  });
  page.on("pageerror", (e) => console.log(`PAGE ERROR ${e.message}`));
  return page;
}

async function signIn(page, token) {
  await page.goto(cfg.url);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("header .who").waitFor();
}

/** Whether the WebGL canvas shows more than a flat background (copied through a 2D canvas). */
async function canvasColours(page) {
  return page.locator("#view3d").evaluate((c) => {
    const t = document.createElement("canvas");
    t.width = c.width;
    t.height = c.height;
    const g = t.getContext("2d");
    g.drawImage(c, 0, 0);
    const d = g.getImageData(0, 0, t.width, t.height).data;
    const seen = new Set();
    for (let i = 0; i < d.length; i += 4 * 7) seen.add((d[i] >> 3) * 1024 + (d[i + 1] >> 3) * 32 + (d[i + 2] >> 3));
    return seen.size;
  });
}

async function jobState(page) {
  return (await page.locator("#watch-state").textContent())?.trim();
}

async function waitState(page, want, ms) {
  await page.waitForFunction(
    (w) => document.querySelector("#watch-state")?.textContent?.trim() === w,
    want,
    { timeout: ms },
  );
}

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  headless: true,
  // Software WebGL (no GPU here); the sandbox needs user namespaces a CI container may lack.
  // Chromium's own background traffic (updates, sync) has nowhere to go here; keep it off.
  args: [
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
  ],
});
let current = null;
try {
  // A wrong token: the API's own sentence, no page.
  const page = await newPage(browser);
  current = page;
  await page.goto(cfg.url);
  await page.getByLabel("API token").fill("not-a-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  const alert = page.locator(".signin .alert");
  await alert.waitFor();
  const said = (await alert.textContent()) ?? "";
  check(said.length > 10 && !/^\[?\w+\]?$/.test(said), `a sentence for a wrong token, got ${JSON.stringify(said)}`);
  console.log(`wrong token: ${said}`);
  await shot(page, "wrong-token");

  // The designer: upload, report, 3D view on the bed.
  await signIn(page, cfg.designer);
  await page.locator("#up-h").waitFor();
  await shot(page, "designer-signed-in");
  await page.setInputFiles("#file", cfg.stl);
  await page.locator("#verdict").waitFor();
  check((await page.locator("#verdict").textContent()).includes("printable"), "a verdict");
  await page.locator("#view3d[data-drawn]").waitFor();
  await page.waitForTimeout(300);
  const colours = await canvasColours(page);
  check(colours > 8, `the 3D view draws the model and bed (${colours} colours)`);
  console.log(`3D view: ${colours} colours`);
  check((await page.locator("#upload-status").textContent()).includes("uploaded"), "upload finished");
  await shot(page, "report-and-3d-view");

  // Estimates per profile.
  await page.locator("details.estimates summary").click();
  await page.locator("#estimate").click();
  await page.locator("details.estimates tbody tr th").first().waitFor();
  await page.waitForFunction(() => !document.querySelector("details.estimates tbody")?.textContent?.includes("Estimating"));

  // Quote with reasons, then order from the first option.
  await page.locator("#q-lat").fill(String(cfg.customer[0]));
  await page.locator("#q-lon").fill(String(cfg.customer[1]));
  await page.locator("#get-quote").click();
  await page.locator("#options .option").first().waitFor();
  const reasons = await page.locator("#options .option").first().locator(".reasons li").count();
  check(reasons > 0, "the first option has reasons");
  const optionText = await page.locator("#options .option").first().textContent();
  check(/km/.test(optionText) && /g/.test(optionText), `time, material and distance shown: ${optionText}`);
  await shot(page, "quote-with-reasons");
  await page.locator("#options .option .order").first().click();
  await page.locator("#ordered").waitFor();
  await page.locator("#watch-state").waitFor();

  // Live progress: pause while printing, resume, then to the end.
  await waitState(page, "printing", 120000);
  await page.locator("#pause").click();
  await waitState(page, "paused", 30000);
  await shot(page, "job-paused");
  await page.locator("#resume").click();
  await waitState(page, "printing", 30000);
  await waitState(page, "completed", 240000);
  const events = await page.locator("#events li").allTextContents();
  check(events.some((e) => e.includes("paused")) && events.some((e) => e.includes("resumed")), `pause and resume in the events: ${events}`);
  check(events.some((e) => e.includes("completed")), "a completed event");
  await page.waitForFunction(() => document.querySelector("#jobs tbody")?.textContent?.includes("completed"));
  await shot(page, "job-completed");
  const jobName = (await page.locator("#jobs tbody tr").first().getAttribute("data-job")) ?? "";
  check(jobName.startsWith("jobs/"), "the job is listed");

  // A broken STL: its findings in the report and drawn in the view.
  await page.setInputFiles("#file", cfg.broken_stl);
  await page.waitForFunction(() => document.querySelector("#design-h")?.textContent?.includes("bad"));
  await page.locator("#findings").waitFor();
  const findings = await page.locator("#findings").textContent();
  check(/open|hole/i.test(findings), `findings name the open edges: ${findings}`);
  const drawn = await page.locator("#drawn").textContent();
  check(!/Drawn: 0 open edges/.test(drawn), `open edges drawn: ${drawn}`);
  await page.locator("#view3d[data-drawn]").waitFor();
  await page.waitForTimeout(300);
  await shot(page, "broken-stl-findings");
  // The place survives a reload: the open design comes back.
  await page.reload();
  await page.waitForFunction(() => document.querySelector("#design-h")?.textContent?.includes("bad"));
  await page.close();

  // Another designer, on a phone: sees none of the first designer's jobs.
  const other = await newPage(browser, { width: 390, height: 844 });
  current = other;
  await signIn(other, cfg.designer2);
  await other.locator("#jobs tbody tr").first().waitFor();
  const theirs = await other.locator("#jobs tbody").textContent();
  check(!theirs.includes(jobName.slice(-8)) && theirs.includes("No jobs yet"), `another designer's job list: ${theirs}`);
  await shot(other, "other-designer-phone");
  await other.close();

  // The operator: the fleet, live.
  const op = await newPage(browser);
  current = op;
  await signIn(op, cfg.operator);
  await op.locator("#printers .printer").first().waitFor();
  const fleet = await op.locator("#printers").textContent();
  check(fleet.includes(cfg.makerspace) && /idle|printing/.test(fleet), `the operator sees the printers: ${fleet}`);
  await shot(op, "operator-printers");
  await op.close();

  // The admin: a token, its secret once.
  const ad = await newPage(browser);
  current = ad;
  await signIn(ad, cfg.admin);
  await ad.goto(`${cfg.url}#admin`);
  await ad.locator("#t-label").waitFor();
  await ad.locator("#t-role").selectOption({ label: "operator" });
  await ad.locator("#t-label").fill("web test operator");
  await ad.locator("#create-token").click();
  await ad.locator("#secret-value").waitFor();
  const secret = (await ad.locator("#secret-value").textContent()) ?? "";
  check(secret.length >= 20, "a secret is shown");
  await ad.waitForFunction(() => document.querySelector("#tokens")?.textContent?.includes("web test operator"));
  // An API refusal is shown as its sentence.
  await ad.locator("#n-id").fill("UPPER");
  await ad.locator("#n-id").evaluate((e) => e.removeAttribute("pattern"));
  await ad.locator("#create-node").click();
  await ad.locator(".alert:not([hidden])").waitFor();
  const refusal = await ad.locator(".alert:not([hidden])").textContent();
  check(refusal.length > 15, `the API's reason: ${refusal}`);
  console.log(`admin refusal: ${refusal}`);
  await shot(ad, "admin-token-created");
  console.log(`SECRET_SHOWN ${secret.slice(0, 4)}…`);
  await ad.close();

  check(strays.length === 0, `requests left the machine: ${strays.join(", ")}`);
  console.log(`BROWSER OK ${shots.length} screenshots`);
} catch (e) {
  console.error(`BROWSER FAILED: ${e.stack ?? e}`);
  if (current && !current.isClosed()) {
    const path = join(cfg.screenshots, "failure.png");
    await current.screenshot({ path, fullPage: true }).catch(() => {});
    console.error(`SCREENSHOT ${path}`);
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
