// A person's path through the Airflow 3 UI: sign in, open the trigger form of bl832_dispatcher, fill in a
// scan, trigger, and watch the run page until the run succeeds; then a screenshot of the successful run.
//
// Driven by tests/ui/test_ui_trigger.py (which starts the real stack and checks the run over REST), or by
// hand against `make serve`:
//   AIRFLOW_UI_URL=http://127.0.0.1:8080/ AIRFLOW_USERNAME=admin AIRFLOW_PASSWORD=... \
//   SCAN_PATH=/global/raw/<folder>/<file>.h5 node tests/ui/trigger_dispatcher.mjs
// Prints one JSON line {"run_id", "state", "screenshot", "seconds"} on success; exits 1 (with a screenshot
// of the page as it was) on any failure. Uses Debian's chromium (CHROMIUM, default /usr/bin/chromium):
// playwright-core never downloads a browser.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { chromium } from 'playwright-core';

const DAG_ID = 'bl832_dispatcher';
const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') throw new Error(`${name} is not set`);
  return value;
};
const baseUrl = env('AIRFLOW_UI_URL').replace(/\/+$/, '');
const username = env('AIRFLOW_USERNAME');
const password = env('AIRFLOW_PASSWORD');
const scanPath = env('SCAN_PATH');
const screenshot = env('SCREENSHOT', 'tests/ui/artifacts/bl832_dispatcher_success.png');
const runTimeoutMs = Number(env('RUN_TIMEOUT_SECONDS', '420')) * 1000;
const executablePath = env('CHROMIUM', '/usr/bin/chromium');

async function until(check, what, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
const log = (message) => console.error(`[ui] ${new Date().toISOString().slice(11, 19)} ${message}`);

const profile = mkdtempSync(join(tmpdir(), 'als-ui-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  viewport: { width: 1440, height: 900 },
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
context.setDefaultTimeout(60_000); // generous: the machine is shared with the stack's own processes
const page = context.pages()[0] ?? (await context.newPage());
const started = Date.now();

async function signIn() {
  await page.goto(`${baseUrl}/dags/${DAG_ID}`);
  // The simple auth manager sends an anonymous visitor to its sign-in page.
  await page.getByRole('heading', { name: 'Sign into Airflow' }).waitFor();
  await page.getByRole('textbox', { name: 'Username' }).fill(username);
  await page.getByRole('textbox', { name: 'Password' }).fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((url) => url.pathname.endsWith(`/dags/${DAG_ID}`));
  await page.getByRole('heading', { name: DAG_ID, exact: true }).waitFor();
  log(`signed in as ${username}; on the ${DAG_ID} page`);
}

async function fillTriggerForm() {
  await page.getByRole('button', { name: 'Trigger Dag' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByRole('heading', { name: `Trigger Dag - ${DAG_ID}` }).waitFor();
  const params = dialog.getByRole('region');
  // The Params of the DAG, rendered as a form (titles from dags/pipelines/params.py).
  for (const title of ['Scan', 'Export controlled', 'Send to NERSC', 'Reconstruction options']) {
    await params.locator('label', { hasText: title }).first().waitFor();
  }
  const trigger = dialog.getByRole('button', { name: 'Trigger', exact: true });
  if (await trigger.isEnabled()) throw new Error('Trigger is enabled before the required Scan field is filled');

  // The form names each field element_<param>; the Scan field has no accessible name of its own.
  await params.locator('input[name="element_file_path"]').fill(scanPath);
  const exportControlled = params.getByRole('checkbox', { name: 'Export controlled' });
  const sendToNersc = params.getByRole('checkbox', { name: 'Send to NERSC' });
  if (await exportControlled.isChecked()) throw new Error('Export controlled should default to off');
  if (!(await sendToNersc.isChecked())) throw new Error('Send to NERSC should default to on');
  // A person clicks the visible switch (its <label>); the checkbox itself is visually hidden.
  // (`has` takes a locator relative to the label, hence from the page, not from `params`.)
  await params.locator('label[data-scope="switch"]', { has: page.getByRole('checkbox', { name: 'Send to NERSC' }) }).click();
  if (await sendToNersc.isChecked()) throw new Error('Send to NERSC did not switch off');
  await until(() => trigger.isEnabled(), 'the Trigger button to be enabled by a valid form');
  log(`form filled: file_path=${scanPath}, send_to_nersc=off`);

  const created = page.waitForResponse(
    (r) => r.request().method() === 'POST' && /\/api\/v2\/dags\/[^/]+\/dagRuns$/.test(new URL(r.url()).pathname),
  );
  await trigger.click();
  const response = await created;
  if (response.status() !== 200) throw new Error(`trigger answered ${response.status()}: ${await response.text()}`);
  const runId = (await response.json()).dag_run_id;
  log(`triggered run ${runId}`);
  return runId;
}

async function watchRun(runId) {
  // The UI takes the person to the new run's page.
  await page.waitForURL((url) => decodeURIComponent(url.pathname).endsWith(`/runs/${runId}`));
  const heading = page.getByRole('heading', { name: runId, exact: true });
  const badge = heading.locator('xpath=..').getByTestId('state-badge');
  const deadline = Date.now() + runTimeoutMs;
  let last = '';
  let lastReload = Date.now();
  while (Date.now() < deadline) {
    // On a busy machine the page may still be loading: no badge yet is not a state.
    const state = await badge
      .innerText({ timeout: 10_000 })
      .then((text) => text.trim())
      .catch(() => '(page loading)');
    if (state !== last) log(`run page shows: ${state}`);
    last = state;
    if (state === 'Success') return state;
    if (state === 'Failed') throw new Error(`the run page shows ${runId} Failed`);
    // The page refreshes itself while the run is active; reload now and then as a person would.
    if (Date.now() - lastReload > 60_000) {
      await page.reload();
      lastReload = Date.now();
    }
    await page.waitForTimeout(2_000);
  }
  throw new Error(`run ${runId} still shows ${last || 'no state'} after ${runTimeoutMs / 1000}s`);
}

let exitCode = 0;
try {
  await signIn();
  const runId = await fillTriggerForm();
  const state = await watchRun(runId);
  // Show every task of the successful run in the grid (groups expanded) before the screenshot.
  await page.getByRole('button', { name: 'Expand all task groups' }).click();
  await page.waitForTimeout(1_000);
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: false });
  const seconds = Math.round((Date.now() - started) / 1000);
  console.log(JSON.stringify({ run_id: runId, state, screenshot, seconds }));
} catch (error) {
  exitCode = 1;
  const failure = screenshot.replace(/\.png$/, '') + '.failure.png';
  mkdirSync(dirname(failure), { recursive: true });
  await page.screenshot({ path: failure, fullPage: true }).catch(() => {});
  console.error(`[ui] FAILED at ${page.url()}: ${error.stack ?? error}\n[ui] screenshot of the page: ${failure}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(exitCode);
