// npm run build [-- --base-url https://addins.acme.com/unsubscribe-gate]
//
// dist/launchevent.js: src/config.js then src/launchevent.js, the one file classic Outlook on Windows loads.
// dist/manifest.xml:   manifest.xml with its URLs moved to the base URL the kit's files are served from.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

export const KIT = join(dirname(fileURLToPath(import.meta.url)), "..");
export const EXAMPLE_BASE_URL = "https://addin.example.com/unsubscribe-gate";

export function bundle(kit = KIT) {
  const part = (name) => `// ---- src/${name}\n${readFileSync(join(kit, "src", name), "utf8").trimEnd()}\n`;
  return `// Built by \`npm run build\` from src/config.js and src/launchevent.js: edit those, not this file.\n${part("config.js")}${part("launchevent.js")}`;
}

export function manifestFor(baseUrl, kit = KIT) {
  const url = new URL(baseUrl); // refuses what is not a URL
  if (url.protocol !== "https:") throw new Error(`Outlook loads add-ins over https only, not ${baseUrl}`);
  const base = baseUrl.replace(/\/+$/, "");
  return readFileSync(join(kit, "manifest.xml"), "utf8")
    .replaceAll(EXAMPLE_BASE_URL, base)
    .replaceAll("<AppDomain>https://addin.example.com</AppDomain>", `<AppDomain>${url.origin}</AppDomain>`);
}

export function build({ baseUrl = EXAMPLE_BASE_URL, kit = KIT } = {}) {
  mkdirSync(join(kit, "dist"), { recursive: true });
  writeFileSync(join(kit, "dist", "launchevent.js"), bundle(kit));
  writeFileSync(join(kit, "dist", "manifest.xml"), manifestFor(baseUrl, kit));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { "base-url": { type: "string" } } });
  const baseUrl = values["base-url"] || process.env.ADDIN_BASE_URL || EXAMPLE_BASE_URL;
  build({ baseUrl });
  console.log(`dist/launchevent.js and dist/manifest.xml built for ${baseUrl}`);
}
