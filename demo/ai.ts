/**
 * The demo's "AI": deterministic local stand-ins for a model, so the demo runs offline and its tests can
 * predict every answer and every charge. A real app would call its model provider here.
 */
import { countWords } from './shared';

/** Thrown when the page asks the stand-in to fail, as a model provider's outage would. */
export class ModelFailure extends Error {
  override name = 'ModelFailure';
}

const STOP_WORDS = new Set(
  'a an and are as at be but by each for from has have in into is it its let of on or so that the their them then they this through to was were what when which will with you your'.split(
    ' ',
  ),
);

const sentencesOf = (text: string): string[] =>
  text
    .replace(/\s+/g, ' ')
    .split(/(?<=[.!?])\s+/)
    .map((s) => s.trim())
    .filter(Boolean);

const wordsOf = (text: string): string[] => (text.toLowerCase().match(/[\p{L}\p{N}][\p{L}\p{N}'’-]*/gu) ?? []);

function frequencies(text: string): Map<string, number> {
  const freq = new Map<string, number>();
  for (const w of wordsOf(text)) if (!STOP_WORDS.has(w) && w.length > 2) freq.set(w, (freq.get(w) ?? 0) + 1);
  return freq;
}

/** Extractive summary: the two sentences whose words recur most in the text, in their original order. */
export function summarize(text: string): string {
  const sentences = sentencesOf(text);
  if (sentences.length <= 2) return sentences.join(' ');
  const freq = frequencies(text);
  const score = (s: string) => {
    const words = wordsOf(s);
    return words.reduce((sum, w) => sum + (freq.get(w) ?? 0), 0) / Math.max(1, words.length);
  };
  const best = sentences
    .map((s, i) => ({ s, i, score: score(s) }))
    .sort((a, b) => b.score - a.score || a.i - b.i)
    .slice(0, 2)
    .sort((a, b) => a.i - b.i);
  return best.map((b) => b.s).join(' ');
}

export interface Analysis {
  words: number;
  sentences: number;
  readingSeconds: number;
  keywords: string[];
}

/** Word and sentence counts, reading time at 200 words a minute, and the five most frequent keywords. */
export function analyze(text: string): Analysis {
  const words = countWords(text);
  const keywords = [...frequencies(text).entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, 5)
    .map(([w]) => w);
  return { words, sentences: sentencesOf(text).length, readingSeconds: Math.max(1, Math.round((words / 200) * 60)), keywords };
}

/** A model call takes a moment; the page shows its busy state meanwhile. */
export const thinking = (ms = 250): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
