import { chromium } from 'playwright-core';
const [base, pw, scan] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox','--disable-gpu'] });
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
await page.goto(base + '/dags/bl832_dispatcher');
await page.getByRole('textbox', { name: 'Username' }).fill('admin');
await page.getByRole('textbox', { name: 'Password' }).fill(pw);
await page.getByRole('button', { name: 'Sign in' }).click();
await page.getByRole('button', { name: 'Trigger Dag' }).click();
const dialog = page.getByRole('dialog');
await dialog.locator('input[name="element_file_path"]').fill(scan);
await dialog.locator('label[data-scope="switch"]', { has: page.getByRole('checkbox', { name: 'Send to NERSC' }) }).click();
console.log('send_to_nersc checked?', await dialog.getByRole('checkbox', { name: 'Send to NERSC' }).isChecked());
const t0 = Date.now();
await dialog.getByRole('button', { name: 'Trigger' }).click();
for (let i = 0; i < 6; i++) {
  await page.waitForTimeout(1500);
  console.log(i, page.url());
}
console.log(await page.locator('body').ariaSnapshot());
await page.screenshot({ path: '/tmp/uiexp/after.png' });
await browser.close();
