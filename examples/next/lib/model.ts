/**
 * A simulated chat model: deterministic local stand-in for a model provider's streaming API, so the example
 * runs offline and its test can predict every token and every charge. A real app would stream from its
 * provider here (and count the tokens the provider reports).
 *
 * The answer comes in paragraphs. Tokens follow each other after TOKEN_MS; between two paragraphs the
 * model pauses for PARAGRAPH_PAUSE_MS, as a real model pauses while it calls a tool. A person (or the
 * end-to-end test) who stops the answer during that pause has been delivered exactly the paragraphs shown.
 */

export const TOKEN_MS = 25;
export const PARAGRAPH_PAUSE_MS = 4_000;

export interface SimulatedToken {
  text: string;
  /** How long the model takes before producing this token. */
  delayMs: number;
}

/** The answer to `prompt`, token by token (a token is a word with the space after it). */
export function simulatedAnswer(prompt: string): SimulatedToken[] {
  const topic = prompt.trim().replace(/\s+/g, ' ').replace(/[?.!]+$/, '');
  // Asking for more gets a longer answer, in three paragraphs.
  const long = /\b(long|detail|more)\b/i.test(prompt);
  const paragraphs = [
    `(Simulated model.) You asked: "${clip(topic)}". Here is ${long ? 'a longer answer, in three paragraphs.' : 'a short answer in two sentences.'} Credits pay for each token.`,
  ];
  if (long) {
    paragraphs.push(
      'Second paragraph: a real model would stream its tokens from the provider, and the route would count them.',
      'Third paragraph: whatever was delivered is settled, and the rest of the reservation goes back.',
    );
  }
  const tokens: SimulatedToken[] = [];
  paragraphs.forEach((paragraph, p) => {
    const words = paragraph.split(' ');
    words.forEach((word, w) => {
      const last = w === words.length - 1;
      tokens.push({
        text: last ? (p === paragraphs.length - 1 ? word : `${word}\n\n`) : `${word} `,
        delayMs: w === 0 && p > 0 ? PARAGRAPH_PAUSE_MS : TOKEN_MS,
      });
    });
  });
  return tokens;
}

/** At most eight words of the question, so that every answer fits the reservation. */
function clip(topic: string): string {
  const words = topic.split(' ');
  return words.length <= 8 ? topic : `${words.slice(0, 8).join(' ')}…`;
}
