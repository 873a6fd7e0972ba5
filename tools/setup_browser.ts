// Makes sure Debian's Chromium is there for the explorer's end-to-end test: installs it with
// apt-get on Debian/Ubuntu as root when missing (saying so in one line); elsewhere says that the
// browser test will be skipped and how to enable it. Never fails the test task.
//   deno run --allow-read --allow-env --allow-run --allow-sys tools/setup_browser.ts
const CHROMIUM = "/usr/bin/chromium";

function exists(p: string): boolean {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
}

async function run(cmd: string[]): Promise<boolean> {
  try {
    const out = await new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      stdout: "null",
      stderr: "null",
      env: { DEBIAN_FRONTEND: "noninteractive" },
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

if (!exists(CHROMIUM)) {
  const root = Deno.uid?.() === 0;
  if (Deno.build.os === "linux" && root && (await run(["apt-get", "--version"]))) {
    console.error(
      "hooklens: installing Debian's Chromium for the explorer's browser test (apt-get install chromium)...",
    );
    const ok = (await run(["apt-get", "install", "-y", "-qq", "chromium"])) ||
      ((await run(["apt-get", "update", "-qq"])) &&
        (await run(["apt-get", "install", "-y", "-qq", "chromium"])));
    if (!ok) {
      console.error(
        "hooklens: Chromium could not be installed; the explorer's browser test will be skipped.",
      );
    }
  } else {
    console.error(
      `hooklens: no ${CHROMIUM}; the explorer's browser test will be skipped (install the chromium package to run it).`,
    );
  }
}
