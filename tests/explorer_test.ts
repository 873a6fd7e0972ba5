// The feature explorer end to end: the server on a free loopback port, Debian's Chromium headless
// driven by playwright-core: load the page, enter text, pick a token and a latent, scan the corpus,
// ablate the latent, and check what the page shows. A screenshot is saved in tests/artifacts/.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { DEMO_CORPUS, loadCorpus, loadModelAndSae } from "../src/cli.ts";
import { serveExplorer } from "../src/explore/server.ts";

const CHROMIUM = "/usr/bin/chromium";
const hasChromium = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();
if (!hasChromium) {
  console.log(
    `explorer_test: ${CHROMIUM} not found, the browser test is skipped (tools/setup_browser.ts installs it).`,
  );
}

Deno.test({
  name:
    "explorer page: analyze text, select a latent, scan the corpus, ablate, all in a real browser",
  ignore: !hasChromium,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const { model, sae } = await loadModelAndSae();
    const ex = await serveExplorer({ model, sae, corpus: await loadCorpus(DEMO_CORPUS), port: 0 });
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
      await page.goto(ex.url);
      await page.waitForFunction(`document.getElementById("info").textContent.includes("latents")`);
      const text =
        "def total(items):\n    result = 0\n    for item in items:\n        result += item\n    return result\n";
      await page.fill("#text", text);
      await page.click("#analyze");
      await page.waitForFunction(`document.querySelectorAll(".tok").length > 10`);
      const tokens = await page.$$eval(".tok", (els) => els.map((e) => e.textContent));
      assert.equal(
        tokens.join(""),
        "<|endoftext|>" + text,
        "the page shows every token of the text",
      );
      // Click the first " return" token: its latents are listed.
      const pos = tokens.indexOf(" return");
      assert.ok(pos > 0);
      await page.click(`.tok[data-pos="${pos}"]`);
      await page.waitForSelector("#token-latents .latent");
      const latent = Number(await page.getAttribute("#token-latents .latent", "data-latent"));
      await page.click("#token-latents .latent");
      await page.waitForFunction(
        `document.getElementById("latent-title").textContent === "#${latent}"`,
      );
      // Tokens are shaded by the latent: the " return" token most of all.
      await page.waitForFunction(
        `document.getElementById("shade-note").textContent.includes("shaded")`,
      );
      const shades = await page.$$eval(
        ".tok",
        (els) => els.map((e) => e.getAttribute("title") ?? ""),
      );
      const acts = shades.map((t) => Number(t.replace("act ", "")));
      assert.ok(acts[pos] > 0, "the selected token activates its own latent");
      // The logit lens lists ten promoted tokens.
      assert.equal(await page.locator("#promoted tr").count(), 10);
      // Scan the corpus (progress, then top contexts and a histogram).
      await page.click("#scan");
      await page.waitForFunction(
        `document.getElementById("scan-status").textContent.startsWith("done")`,
        null,
        { timeout: 120000 },
      );
      await page.waitForSelector("#contexts tr");
      assert.ok(await page.locator("#contexts tr").count() > 0, "top contexts are listed");
      assert.ok(await page.locator("#histogram svg rect").count() === 20, "a 20-bin histogram");
      // Ablate the latent: the next-token predictions change.
      await page.click("#ablate");
      await page.waitForSelector("#pred-after tr");
      const before = await page.$$eval("#pred-before tr", (rows) => rows.map((r) => r.textContent));
      const after = await page.$$eval("#pred-after tr", (rows) => rows.map((r) => r.textContent));
      assert.equal(before.length, 8);
      assert.notDeepEqual(after, before, "ablating the latent changes the predictions");
      assert.ok((await page.textContent("#pred-mode"))!.includes("zeroed"));
      await Deno.mkdir(new URL("./artifacts/", import.meta.url), { recursive: true });
      await page.screenshot({
        path: new URL("./artifacts/explorer.png", import.meta.url).pathname,
        fullPage: true,
      });
    } finally {
      await browser.close();
      await ex.shutdown();
      model.dispose();
      sae.dispose();
    }
  },
}); // deno-fmt-ignore
