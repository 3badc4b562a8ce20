// What the kit's tests share: where its files are, and how an Apex file is parsed.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { ApexErrorListener, ApexParserFactory } from "@apexdevtools/apex-parser";

export const KIT = join(dirname(fileURLToPath(import.meta.url)), "..");
export const SOURCE = join(KIT, "force-app", "main", "default");
export const SAMPLES = join(KIT, "samples");

export function filesUnder(folder, suffix) {
  const found = [];
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) found.push(...filesUnder(path, suffix));
    else if (entry.name.endsWith(suffix)) found.push(path);
  }
  return found.sort();
}

export function shortName(path) {
  return relative(KIT, path);
}

export function read(path) {
  return readFileSync(path, "utf8");
}

class CollectingListener extends ApexErrorListener {
  errors = [];
  apexSyntaxError(line, column, message) {
    this.errors.push(`${line}:${column} ${message}`);
  }
}

/** Syntax errors of an Apex class (`.cls`) or trigger (`.trigger`) source, lexer's and parser's alike. */
export function apexSyntaxErrors(source, kind) {
  const listener = new CollectingListener();
  const { parser } = ApexParserFactory.createLexerAndParser(source, listener);
  if (kind === "trigger") parser.triggerUnit();
  else parser.compilationUnit();
  return listener.errors;
}
