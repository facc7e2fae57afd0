/**
 * Applies a unified diff (as `diff -u`, `git diff` or `patch -p1` read them) to a directory, strictly: every
 * hunk must match the file exactly at the line it names, or nothing is written. It is meant for patching a
 * pinned, checksummed copy of a module, where any mismatch means the patch no longer fits the version and
 * should be looked at, not applied with fuzz. It exists so that building needs neither `patch` nor `git`.
 *
 * Supported: changes to existing text files, with paths stripped of their first component (`-p1`). Not
 * supported (and refused): creating, deleting or renaming files, binary patches.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join, normalize, sep } from 'node:path';

interface Hunk {
  oldStart: number;
  /** Lines the file must hold at oldStart ('-' and ' ' lines). */
  oldLines: string[];
  /** What replaces them ('+' and ' ' lines). */
  newLines: string[];
  /** The file ends here without a newline (a "\ No newline at end of file" after the new side). */
  newNoEol: boolean;
}

export interface FilePatch {
  path: string;
  hunks: Hunk[];
}

export class PatchError extends Error {
  override name = 'PatchError';
}

/** Parses a unified diff; text before the first `--- ` line (a header, an explanation) is ignored. */
export function parsePatch(text: string): FilePatch[] {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const files: FilePatch[] = [];
  let i = 0;
  while (i < lines.length) {
    if (!(lines[i]!.startsWith('--- ') && lines[i + 1]?.startsWith('+++ '))) {
      if (lines[i]!.startsWith('GIT binary patch') || lines[i]!.startsWith('Binary files ')) {
        throw new PatchError(`binary patches are not supported (line ${i + 1})`);
      }
      if (files.length > 0 && lines[i]!.startsWith('@@ ')) {
        throw new PatchError(`hunk outside a file's changes (line ${i + 1}): is a line missing above it?`);
      }
      i++;
      continue;
    }
    const oldPath = stripPath(lines[i]!.slice(4));
    const newPath = stripPath(lines[i + 1]!.slice(4));
    if (oldPath === null || newPath === null || oldPath !== newPath) {
      throw new PatchError(`only changes to existing files are supported (line ${i + 1}: ${lines[i]})`);
    }
    if (files.some((f) => f.path === newPath)) throw new PatchError(`${newPath} is patched twice`);
    const file: FilePatch = { path: newPath, hunks: [] };
    files.push(file);
    i += 2;
    while (i < lines.length && lines[i]!.startsWith('@@ ')) {
      const m = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/.exec(lines[i]!);
      if (!m) throw new PatchError(`malformed hunk header (line ${i + 1}: ${lines[i]})`);
      let oldLeft = m[2] === undefined ? 1 : Number(m[2]);
      let newLeft = m[4] === undefined ? 1 : Number(m[4]);
      const hunk: Hunk = { oldStart: Number(m[1]), oldLines: [], newLines: [], newNoEol: false };
      i++;
      let last = '';
      while (oldLeft > 0 || newLeft > 0 || lines[i]?.startsWith('\\')) {
        const line = lines[i];
        if (line === undefined) throw new PatchError(`hunk of ${file.path} ends early`);
        // An empty line is a context line whose leading space was lost (some editors strip it).
        const kind = line === '' ? ' ' : line[0];
        const body = line.slice(1);
        if (kind === ' ') {
          hunk.oldLines.push(body);
          hunk.newLines.push(body);
          oldLeft--;
          newLeft--;
        } else if (kind === '-') {
          hunk.oldLines.push(body);
          oldLeft--;
        } else if (kind === '+') {
          hunk.newLines.push(body);
          newLeft--;
        } else if (kind === '\\') {
          if (last !== '-') hunk.newNoEol = true;
        } else {
          throw new PatchError(`unexpected line in hunk of ${file.path} (line ${i + 1}: ${line})`);
        }
        if (oldLeft < 0 || newLeft < 0) throw new PatchError(`hunk of ${file.path} is longer than its header says`);
        last = kind;
        i++;
      }
      file.hunks.push(hunk);
    }
    if (file.hunks.length === 0) throw new PatchError(`no hunks for ${file.path}`);
  }
  if (files.length === 0) throw new PatchError('no file changes found');
  return files;
}

/** `a/x/y.go` -> `x/y.go` (with any tab-separated timestamp removed); null for /dev/null. */
function stripPath(raw: string): string | null {
  const path = raw.split('\t')[0]!.trim();
  if (path === '/dev/null') return null;
  const slash = path.indexOf('/');
  if (slash < 0) throw new PatchError(`cannot strip a leading component from ${path}`);
  return path.slice(slash + 1);
}

/**
 * Applies the patch to the files under dir. All files are checked before any is written, so a patch that
 * does not fit leaves dir as it was. Returns the paths changed.
 */
export function applyPatch(dir: string, text: string): string[] {
  const results: Array<{ file: string; content: string }> = [];
  for (const fp of parsePatch(text)) {
    const rel = normalize(fp.path);
    if (rel.startsWith('..') || rel.startsWith(sep)) throw new PatchError(`path leaves the directory: ${fp.path}`);
    const file = join(dir, rel);
    const original = readFileSync(file, 'utf8');
    const endsWithEol = original.endsWith('\n');
    const lines = (endsWithEol ? original.slice(0, -1) : original).split('\n');
    let eol = endsWithEol;
    let shift = 0; // lines added minus lines removed by earlier hunks
    for (const [n, h] of fp.hunks.entries()) {
      // A hunk with no old lines (pure insertion) names the line after which it inserts.
      const at = (h.oldLines.length === 0 ? h.oldStart : h.oldStart - 1) + shift;
      const found = lines.slice(at, at + h.oldLines.length);
      if (found.length !== h.oldLines.length || found.some((l, k) => l !== h.oldLines[k])) {
        throw new PatchError(
          `hunk ${n + 1} of ${fp.path} does not match the file at line ${h.oldStart}; ` +
            'the patch was made for another version of this source',
        );
      }
      lines.splice(at, h.oldLines.length, ...h.newLines);
      shift += h.newLines.length - h.oldLines.length;
      if (at + h.newLines.length === lines.length) eol = !h.newNoEol;
    }
    results.push({ file, content: lines.join('\n') + (eol ? '\n' : '') });
  }
  for (const r of results) writeFileSync(r.file, r.content);
  return results.map((r) => r.file);
}
