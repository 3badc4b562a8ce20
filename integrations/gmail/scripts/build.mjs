// npm run build: the unpacked extension in dist/ (load it in chrome://extensions, or pack it for the admin).
// esbuild bundles InboxSDK into the content script and the service worker (MV3 allows no remote code);
// InboxSDK's pageWorld.js, which its service-worker part injects into Gmail's page, is copied beside them.
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

export const KIT = join(dirname(fileURLToPath(import.meta.url)), "..");
export const DIST = join(KIT, "dist");
const require = createRequire(import.meta.url);

export async function build({ outdir = DIST, entries = {} } = {}) {
  rmSync(outdir, { recursive: true, force: true });
  mkdirSync(outdir, { recursive: true });
  await esbuild.build({
    entryPoints: {
      content: join(KIT, "src", "content.js"),
      background: join(KIT, "src", "background.js"),
      options: join(KIT, "src", "options.js"),
      ...entries,
    },
    outdir,
    bundle: true,
    format: "iife",
    target: "chrome110",
    legalComments: "eof", // InboxSDK's licence notice stays in the bundle
    logLevel: "warning",
  });
  copyFileSync(join(KIT, "manifest.json"), join(outdir, "manifest.json"));
  for (const file of ["options.html", "managed_schema.json"]) copyFileSync(join(KIT, "src", file), join(outdir, file));
  for (const size of [64, 128]) copyFileSync(join(KIT, "assets", `icon-${size}.png`), join(outdir, `icon-${size}.png`));
  copyFileSync(join(dirname(require.resolve("@inboxsdk/core")), "pageWorld.js"), join(outdir, "pageWorld.js"));
  return outdir;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await build();
  console.log("dist/: the unpacked extension");
}
