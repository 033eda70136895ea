import type { ModelArch } from './graph.ts';

/**
 * Writes a HuggingFace tokenizer.json for a generated model: a BERT WordPiece tokenizer (lower-cased,
 * `[CLS] a [SEP] b [SEP]`, type ids 0/1) or an XLM-R style Unigram tokenizer (`<s> a </s></s> b </s>`).
 * The vocabulary is generated, not learned: real English words first, then sub-word pieces ordered by how
 * English-like their letters are, so that ordinary text tokenizes into a plausible number of tokens.
 */

export interface SpecialTokenIds {
  pad: number;
  unk: number;
  /** First token of every input: `[CLS]` or `<s>`. */
  cls: number;
  /** Separator and end token: `[SEP]` or `</s>`. */
  sep: number;
  mask: number;
}

interface SpecialTokens {
  pad: string;
  unk: string;
  cls: string;
  sep: string;
  mask: string;
}

const BERT_SPECIALS: SpecialTokens = { pad: '[PAD]', unk: '[UNK]', cls: '[CLS]', sep: '[SEP]', mask: '[MASK]' };
const XLMR_SPECIALS: SpecialTokens = { pad: '<pad>', unk: '<unk>', cls: '<s>', sep: '</s>', mask: '<mask>' };

/** Token ids of the special tokens; XLM-R keeps its real layout (`<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, `<mask>` last). */
export function specialTokenIds(arch: ModelArch, vocabSize: number): SpecialTokenIds {
  return arch === 'bert'
    ? { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 }
    : { cls: 0, pad: 1, sep: 2, unk: 3, mask: vocabSize - 1 };
}

export function specialTokens(arch: ModelArch): SpecialTokens {
  return arch === 'bert' ? BERT_SPECIALS : XLMR_SPECIALS;
}

const PUNCTUATION = '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~';
const DIGITS = '0123456789';
const LOWER = 'abcdefghijklmnopqrstuvwxyz';
const UPPER = LOWER.toUpperCase();

export const COMMON_WORDS = `
the of and to in a is that for it as was with be by on not he i this are or his from at which but have an
they you were her she there one all we their been has when who will more no if out so said what up its about
into than them can only other new some could time these two may then do first any my now such like our over man
me even most made after also did many before must through back years where much your way well down should because
each just those people how too little state good very make world still own see men work long get here between both
life being under never day same another know while last might us great old year off come since against go came
right used take three states himself few house use during without again place american around however home small
found mrs thought went say part once general high upon school every don does got united left number course war until
always away something fact though water less public put think almost hand enough far took head yet government system
better set told nothing night end why called didn find look asked later knew point next program city business give
group toward young days let room president side social given present several order national possible rather second face
per among form important often things looked early white case john become large big need four within felt children along
saw best church ever least power development light thing seemed family interest want members others mind country area
done turned although open god service certain kind problem began different door thus help sense means whole matter
perhaps itself york times law human line above name example action company hands local show five history whether gave
either today act feet across taken past quite anything seen having death week experience body word half really field
car words already information question data model search query document answer result results text language learning
retrieval ranking score relevant passage training network neural vector index context paper research method methods
study using based user users code file files server request response version memory process value values level type
list test tests error errors support include including provide provides following could paris france capital city
weather today tomorrow price market energy health medical patient patients disease treatment cell cells protein
`;

const PREFIXES = ['un', 're', 'in', 'dis', 'en', 'non', 'pre', 'over', 'mis', 'sub', 'inter', 'trans', 'under', 'anti'];
const SUFFIXES = [
  's', 'es', 'ed', 'ing', 'er', 'ers', 'est', 'ly', 'ion', 'ions', 'tion', 'tions', 'sion', 'ment', 'ments', 'ness',
  'able', 'ible', 'al', 'ial', 'ful', 'less', 'ous', 'ive', 'ity', 'ities', 'ize', 'ized', 'ise', 'ism', 'ist', 'ists',
  'ic', 'ical', 'ance', 'ence', 'ant', 'ent', 'ary', 'ory', 'ship', 'hood', 'ward', 'wise', 'age', 'ate', 'ated', 'ating',
];

/** English letter frequencies (per 10,000 letters), integers so that products order pieces exactly everywhere. */
const LETTER_WEIGHT: Readonly<Record<string, number>> = {
  e: 1270, t: 906, a: 817, o: 751, i: 697, n: 675, s: 633, h: 609, r: 599, d: 425, l: 403, c: 278, u: 276,
  m: 241, w: 236, f: 223, g: 202, y: 197, p: 193, b: 129, v: 98, k: 77, j: 15, x: 15, q: 10, z: 7,
};

function letterGrams(length: number): string[] {
  let grams = [''];
  for (let i = 0; i < length; i++) grams = grams.flatMap((prefix) => [...LOWER].map((letter) => prefix + letter));
  const weight = (gram: string): number => [...gram].reduce((w, letter) => w * (LETTER_WEIGHT[letter] ?? 1), 1);
  return grams
    .map((gram) => ({ gram, weight: weight(gram) }))
    .sort((a, b) => b.weight - a.weight || (a.gram < b.gram ? -1 : a.gram > b.gram ? 1 : 0))
    .map((entry) => entry.gram);
}

/** A piece of the generated inventory: a word start, or a continuation inside a word. */
interface Piece {
  text: string;
  continuation: boolean;
}

function* pieceInventory(arch: ModelArch): Generator<Piece> {
  // SentencePiece vocabularies hold the lone word-boundary marker.
  if (arch === 'xlmr') yield { text: '', continuation: false };
  const chars = arch === 'bert' ? PUNCTUATION + DIGITS + LOWER : PUNCTUATION + DIGITS + LOWER + UPPER;
  for (const char of chars) yield { text: char, continuation: false };
  // BERT splits punctuation off as words of its own, so only digits and letters continue a word there.
  for (const char of arch === 'bert' ? LOWER + DIGITS : chars) yield { text: char, continuation: true };
  for (const word of COMMON_WORDS.split(/\s+/).filter(Boolean)) {
    yield { text: word, continuation: false };
    if (arch === 'xlmr') yield { text: word[0]!.toUpperCase() + word.slice(1), continuation: false };
  }
  for (const prefix of PREFIXES) yield { text: prefix, continuation: false };
  for (const suffix of SUFFIXES) yield { text: suffix, continuation: true };
  for (const length of [2, 3]) {
    for (const gram of letterGrams(length)) {
      yield { text: gram, continuation: false };
      yield { text: gram, continuation: true };
    }
  }
}

function renderPiece(arch: ModelArch, piece: Piece): string {
  if (arch === 'bert') return piece.continuation ? `##${piece.text}` : piece.text;
  return piece.continuation ? piece.text : `▁${piece.text}`;
}

/** The vocabulary in id order: exactly vocabSize distinct tokens, special tokens at their fixed ids. */
export function buildVocabulary(arch: ModelArch, vocabSize: number): string[] {
  const ids = specialTokenIds(arch, vocabSize);
  const names = specialTokens(arch);
  const fixed = new Map<number, string>([
    [ids.pad, names.pad],
    [ids.unk, names.unk],
    [ids.cls, names.cls],
    [ids.sep, names.sep],
    [ids.mask, names.mask],
  ]);
  const vocab: string[] = [];
  const seen = new Set(fixed.values());
  const pieces = pieceInventory(arch);
  for (let id = 0; id < vocabSize; id++) {
    const special = fixed.get(id);
    if (special !== undefined) {
      vocab.push(special);
      continue;
    }
    let token: string | undefined;
    for (let next = pieces.next(); !next.done; next = pieces.next()) {
      const candidate = renderPiece(arch, next.value);
      if (!seen.has(candidate)) {
        token = candidate;
        break;
      }
    }
    if (token === undefined) throw new Error(`cannot generate ${vocabSize} distinct tokens (ran out at ${id})`);
    seen.add(token);
    vocab.push(token);
  }
  return vocab;
}

function addedToken(id: number, content: string): Record<string, unknown> {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

/** The tokenizer.json document (HF tokenizers format, version 1.0). */
export function buildTokenizerJson(arch: ModelArch, vocabSize: number): Record<string, unknown> {
  const vocab = buildVocabulary(arch, vocabSize);
  const ids = specialTokenIds(arch, vocabSize);
  const names = specialTokens(arch);
  const added = [
    addedToken(ids.pad, names.pad),
    addedToken(ids.unk, names.unk),
    addedToken(ids.cls, names.cls),
    addedToken(ids.sep, names.sep),
    addedToken(ids.mask, names.mask),
  ].sort((a, b) => (a.id as number) - (b.id as number));
  return arch === 'bert' ? bertTokenizer(vocab, names, ids, added) : xlmrTokenizer(vocab, ids, added);
}

function bertTokenizer(
  vocab: string[],
  names: SpecialTokens,
  ids: SpecialTokenIds,
  added: Record<string, unknown>[],
): Record<string, unknown> {
  const special = (id: string, typeId: number) => ({ SpecialToken: { id, type_id: typeId } });
  const sequence = (id: 'A' | 'B', typeId: number) => ({ Sequence: { id, type_id: typeId } });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [special(names.cls, 0), sequence('A', 0), special(names.sep, 0)],
      pair: [special(names.cls, 0), sequence('A', 0), special(names.sep, 0), sequence('B', 1), special(names.sep, 1)],
      special_tokens: {
        [names.cls]: { id: names.cls, ids: [ids.cls], tokens: [names.cls] },
        [names.sep]: { id: names.sep, ids: [ids.sep], tokens: [names.sep] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: names.unk,
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(vocab.map((token, id) => [token, id])),
    },
  };
}

function xlmrTokenizer(vocab: string[], ids: SpecialTokenIds, added: Record<string, unknown>[]): Record<string, unknown> {
  const metaspace = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true };
  const specialIds = new Set([ids.pad, ids.unk, ids.cls, ids.sep, ids.mask]);
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFKC' }, { type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' }],
    },
    pre_tokenizer: metaspace,
    post_processor: {
      type: 'RobertaProcessing',
      sep: [vocab[ids.sep], ids.sep],
      cls: [vocab[ids.cls], ids.cls],
      trim_offsets: true,
      add_prefix_space: true,
    },
    decoder: metaspace,
    model: {
      type: 'Unigram',
      unk_id: ids.unk,
      // Log-probability-like scores falling with rank: whole words beat their sub-word splits.
      vocab: vocab.map((token, id) => [token, specialIds.has(id) ? 0 : -Math.round(Math.log(id + 2) * 1e4) / 1e4]),
      byte_fallback: false,
    },
  };
}
