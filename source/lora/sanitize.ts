// Makes untrusted text (metadata values, tensor names, file names) inert before it reaches a terminal.
//
// Scheme, chosen so that nothing from a file can move the cursor, recolour, retitle, write the
// clipboard or reorder text, while the visible characters stay readable:
// - Well-formed ESC sequences are removed: CSI (ESC [ … final), OSC (ESC ] … BEL|ST, incl. OSC 0 titles,
//   OSC 8 links, OSC 52 clipboard writes), DCS/SOS/PM/APC strings (ESC P|X|^|_ … ST), nF escapes
//   (ESC + intermediates + final, e.g. ESC ( B) and two-character escapes (ESC 7, ESC c, …). They carry
//   no visible text of their own; the text around them (e.g. an OSC 8 link's label) is kept.
// - Any other ESC, and an unterminated sequence, shows as the control picture `␛` and what follows is
//   kept as plain text (it is inert once the ESC is gone).
// - C0 controls show as their Unicode control pictures (U+2400 + code: `␀`, `␇`, `␍`, …) and DEL as `␡`;
//   in ascii mode as caret notation (`^@`, `^G`, `^M`, `^?`). `\n` and `\t` are kept unless singleLine
//   (then `\n` shows as `␊`/`^J` and `\t` becomes a space); in multi-line mode `\r\n` becomes `\n`.
// - C1 controls U+0080–U+009F (incl. the 8-bit CSI U+009B) show as `\x9B` (they have no pictures).
// - Bidi embeddings/overrides/isolates and marks, zero-width and other invisible format characters,
//   and Unicode tag characters are dropped. U+2028/U+2029 count as line breaks. Lone surrogates → U+FFFD.
// - ascii mode replaces any other non-ASCII character with `?`.
// - maxLength bounds the display width (see displayWidth); longer text is cut and ends with `…`
//   (ascii: `...`). Scanning stops as soon as the budget is exceeded, so huge values are cheap.

export type SanitizeOptions = {
	/** Maximum display width of the result, in terminal columns (newlines count as one). */
	maxLength?: number;
	/** Render on one line: newlines become visible markers, tabs become spaces. */
	singleLine?: boolean;
	/** Output only printable ASCII (for non-UTF-8 locales). */
	ascii?: boolean;
};

const esc = 0x1b;
const bel = 0x07;

function isInvisibleFormat(cp: number): boolean {
	return (
		cp === 0x00ad || // soft hyphen
		cp === 0x034f || // combining grapheme joiner
		cp === 0x061c || // Arabic letter mark
		cp === 0x180e || // Mongolian vowel separator
		(cp >= 0x200b && cp <= 0x200f) || // zero-width space/non-joiner/joiner, LRM, RLM
		(cp >= 0x202a && cp <= 0x202e) || // bidi embeddings and overrides
		(cp >= 0x2060 && cp <= 0x206f) || // word joiner, invisible operators, bidi isolates, deprecated format
		cp === 0xfeff || // BOM / zero-width no-break space
		(cp >= 0xfff9 && cp <= 0xfffb) || // interlinear annotation
		(cp >= 0xe0000 && cp <= 0xe007f) // tag characters (hidden text)
	);
}

const zeroWidthPattern = /^[\p{Mn}\p{Me}]$/u;
const emojiPresentationPattern = /^\p{Emoji_Presentation}$/u;

// East Asian Wide and Fullwidth blocks (a compact subset of Unicode's EastAsianWidth W/F ranges that
// covers CJK, Hangul, kana, fullwidth forms and the emoji blocks).
const wideRanges: Array<[number, number]> = [
	[0x1100, 0x115f],
	[0x231a, 0x231b],
	[0x2329, 0x232a],
	[0x23e9, 0x23ec],
	[0x23f0, 0x23f0],
	[0x23f3, 0x23f3],
	[0x25fd, 0x25fe],
	[0x2614, 0x2615],
	[0x2e80, 0x303e],
	[0x3041, 0x33ff],
	[0x3400, 0x4dbf],
	[0x4e00, 0x9fff],
	[0xa000, 0xa4cf],
	[0xa960, 0xa97f],
	[0xac00, 0xd7a3],
	[0xf900, 0xfaff],
	[0xfe10, 0xfe19],
	[0xfe30, 0xfe6f],
	[0xff00, 0xff60],
	[0xffe0, 0xffe6],
	[0x16fe0, 0x16fe4],
	[0x17000, 0x18cff],
	[0x1b000, 0x1b2ff],
	[0x1f004, 0x1f004],
	[0x1f0cf, 0x1f0cf],
	[0x1f18e, 0x1f18e],
	[0x1f191, 0x1f19a],
	[0x1f200, 0x1f251],
	[0x1f300, 0x1f64f],
	[0x1f680, 0x1f6ff],
	[0x1f900, 0x1f9ff],
	[0x1fa70, 0x1faff],
	[0x20000, 0x3fffd],
];

function computeWidth(cp: number): number {
	if ((cp >= 0xfe00 && cp <= 0xfe0f) || (cp >= 0xe0100 && cp <= 0xe01ef) || isInvisibleFormat(cp)) {
		return 0;
	}

	for (const [lo, hi] of wideRanges) {
		if (cp < lo) {
			break;
		}

		if (cp <= hi) {
			return 2;
		}
	}

	const ch = String.fromCodePoint(cp);
	if (zeroWidthPattern.test(ch)) {
		return 0;
	}

	return emojiPresentationPattern.test(ch) ? 2 : 1;
}

// Memo of BMP widths (0 = not computed yet, else width + 1): the regex tests are the slow part, and a
// long CJK or Cyrillic value repeats a few hundred distinct code points. Pure cache, same answers.
const bmpWidths = new Uint8Array(0x10000);

/**
 * Terminal columns of one code point: 0 for combining marks, variation selectors and invisible format
 * characters, 2 for East Asian Wide/Fullwidth and emoji-presentation characters, 1 otherwise.
 * An approximation of wcwidth (string-width is not installed); grapheme clusters are not joined.
 */
export function codePointWidth(cp: number): number {
	if (cp < 0x300) {
		return cp < 0x20 || (cp >= 0x7f && cp < 0xa0) ? 0 : 1;
	}

	if (cp > 0xffff) {
		return computeWidth(cp);
	}

	let w = bmpWidths[cp]!;
	if (w === 0) {
		w = computeWidth(cp) + 1;
		bmpWidths[cp] = w;
	}

	return w - 1;
}

/** Display width of already-sanitised text (sum of codePointWidth; newlines count as one column). */
export function displayWidth(s: string): number {
	let width = 0;
	for (let i = 0; i < s.length; i++) {
		const c = s.charCodeAt(i);
		if (c >= 0x20 && c < 0x7f) {
			width++;
			continue;
		}

		if (c === 0x0a || c === 0x09) {
			width++;
			continue;
		}

		const cp = s.codePointAt(i)!;
		if (cp > 0xffff) {
			i++;
		}

		width += codePointWidth(cp);
	}

	return width;
}

/**
 * Length in code units of the ESC sequence starting at `start` (s[start] is ESC), or 0 when it is
 * not a complete, well-formed sequence. Every scan stops at the next ESC, so a run of broken
 * sequences stays linear in the input length.
 */
function escapeSequenceLength(s: string, start: number): number {
	const n = s.length;
	if (start + 1 >= n) {
		return 0;
	}

	const kind = s.charCodeAt(start + 1);
	let i = start + 2;
	switch (kind) {
		case 0x5b: {
			// CSI: parameter bytes 0x30–0x3F, intermediate bytes 0x20–0x2F, final byte 0x40–0x7E.
			while (i < n) {
				const c = s.charCodeAt(i);
				if (c >= 0x40 && c <= 0x7e) {
					return i + 1 - start;
				}

				if (c < 0x20 || c > 0x3f) {
					return 0;
				}

				i++;
			}

			return 0;
		}

		case 0x5d: // OSC
		case 0x50: // DCS
		case 0x58: // SOS
		case 0x5e: // PM
		case 0x5f: {
			// APC. Terminated by BEL, ST (ESC \) or the C1 ST U+009C.
			while (i < n) {
				const c = s.charCodeAt(i);
				if (c === bel || c === 0x9c) {
					return i + 1 - start;
				}

				if (c === esc) {
					return s.charCodeAt(i + 1) === 0x5c ? i + 2 - start : 0;
				}

				i++;
			}

			return 0;
		}

		default: {
			// nF escapes: intermediates 0x20–0x2F then a final 0x30–0x7E; Fp/Fe/Fs: a single 0x30–0x7E.
			i = start + 1;
			while (i < n && s.charCodeAt(i) >= 0x20 && s.charCodeAt(i) <= 0x2f) {
				i++;
			}

			if (i < n) {
				const c = s.charCodeAt(i);
				if (c >= 0x30 && c <= 0x7e) {
					return i + 1 - start;
				}
			}

			return 0;
		}
	}
}

function controlMarker(code: number, ascii: boolean): string {
	if (code === 0x7f) {
		return ascii ? '^?' : '\u2421';
	}

	return ascii ? `^${String.fromCharCode(code + 0x40)}` : String.fromCharCode(0x2400 + code);
}

/** Cuts already-sanitised text to at most `budget` columns (whole code points). */
function cutToWidth(s: string, budget: number): string {
	let width = 0;
	let i = 0;
	while (i < s.length) {
		const cp = s.codePointAt(i)!;
		const w = cp === 0x0a || cp === 0x09 ? 1 : codePointWidth(cp);
		if (width + w > budget) {
			break;
		}

		width += w;
		i += cp > 0xffff ? 2 : 1;
	}

	return s.slice(0, i);
}

/** Makes untrusted text inert for a terminal; see the scheme at the top of this file. */
export function sanitizeText(raw: string, options: SanitizeOptions = {}): string {
	const singleLine = options.singleLine ?? false;
	const ascii = options.ascii ?? false;
	const maxLength =
		options.maxLength === undefined || Number.isNaN(options.maxLength)
			? Number.POSITIVE_INFINITY
			: Math.max(0, Math.floor(options.maxLength));
	const text = typeof raw === 'string' ? raw : String(raw);
	const n = text.length;
	const parts: string[] = [];
	let width = 0;
	let i = 0;
	// Characters that pass through unchanged are copied as one slice [runStart, i).
	let runStart = 0;

	// Output is collected only until it is one column over budget, so huge values stop early.
	scan: while (i < n && width <= maxLength) {
		const c = text.charCodeAt(i);
		if (c >= 0x20 && c < 0x7f) {
			// Printable ASCII: width 1, never changed.
			width++;
			i++;
			continue;
		}

		let piece: string | null = null;
		let pieceWidth = 0;
		let units = 1;
		if (c === esc) {
			const len = escapeSequenceLength(text, i);
			if (len > 0) {
				units = len;
			} else {
				piece = ascii ? '^[' : '\u241b';
				pieceWidth = piece.length;
			}
		} else if (c === 0x0d && !singleLine && text.charCodeAt(i + 1) === 0x0a) {
			piece = '\n'; // \r\n → \n
			pieceWidth = 1;
			units = 2;
		} else if (c === 0x0a || c === 0x2028 || c === 0x2029) {
			piece = singleLine ? (ascii ? '^J' : '\u240a') : '\n';
			pieceWidth = singleLine ? piece.length : 1;
		} else if (c === 0x09) {
			piece = singleLine ? ' ' : '\t';
			pieceWidth = 1;
		} else if (c < 0x20 || c === 0x7f) {
			piece = controlMarker(c, ascii);
			pieceWidth = piece.length;
		} else if (c >= 0x80 && c <= 0x9f) {
			piece = `\\x${c.toString(16).toUpperCase()}`;
			pieceWidth = piece.length;
		} else {
			// Non-ASCII: decode a code point, replacing lone surrogates.
			let cp = c;
			if (c >= 0xd800 && c <= 0xdbff) {
				const d = text.charCodeAt(i + 1);
				if (d >= 0xdc00 && d <= 0xdfff) {
					cp = ((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000;
					units = 2;
				} else {
					cp = 0xfffd;
				}
			} else if (c >= 0xdc00 && c <= 0xdfff) {
				cp = 0xfffd;
			}

			if (isInvisibleFormat(cp)) {
				piece = ''; // dropped
			} else if (ascii) {
				// Combining marks vanish rather than becoming a stray '?'.
				piece = codePointWidth(cp) === 0 ? '' : '?';
				pieceWidth = piece.length;
			} else if (cp === 0xfffd && c !== 0xfffd) {
				piece = '\ufffd';
				pieceWidth = 1;
			} else {
				// Visible non-ASCII passes through unchanged.
				width += codePointWidth(cp);
				i += units;
				continue scan;
			}
		}

		// Something is replaced or dropped here: flush the unchanged run before it.
		if (i > runStart) {
			parts.push(text.slice(runStart, i));
		}

		if (piece) {
			parts.push(piece);
			width += pieceWidth;
		}

		i += units;
		runStart = i;
	}

	if (i > runStart) {
		parts.push(text.slice(runStart, i));
	}

	const out = parts.join('');
	if (width <= maxLength) {
		return out;
	}

	const ellipsis = ascii ? '...' : '\u2026';
	if (maxLength < ellipsis.length) {
		return ellipsis.slice(0, maxLength);
	}

	return cutToWidth(out, maxLength - (ascii ? 3 : 1)) + ellipsis;
}

/** One line, at most maxLength columns. */
export function sanitizeLine(raw: string, maxLength?: number, ascii = false): string {
	return sanitizeText(raw, {singleLine: true, maxLength, ascii});
}

/** Values above this many characters are not pretty-printed (shown raw and truncated instead). */
export const maxPrettyJsonChars = 4 * 1024 * 1024;
/** Nesting deeper than this is not pretty-printed (JSON.stringify recurses). */
export const maxJsonDepth = 64;

/**
 * Nesting depth of a parsed JSON value, counted without recursion; returns Infinity as soon as it
 * exceeds `limit` or the value holds more than `maxNodes` containers and scalars.
 */
export function jsonDepth(value: unknown, limit = maxJsonDepth, maxNodes = 2_000_000): number {
	let deepest = 0;
	let nodes = 0;
	const stack: Array<[unknown, number]> = [[value, 1]];
	while (stack.length > 0) {
		const [v, d] = stack.pop()!;
		if (++nodes > maxNodes || d > limit) {
			return Number.POSITIVE_INFINITY;
		}

		if (d > deepest) {
			deepest = d;
		}

		if (v !== null && typeof v === 'object') {
			const children = Array.isArray(v) ? v : Object.values(v);
			for (const child of children) {
				if (child !== null && typeof child === 'object') {
					stack.push([child, d + 1]);
				} else if (++nodes > maxNodes) {
					return Number.POSITIVE_INFINITY;
				}
			}
		}
	}

	return deepest;
}

/**
 * Python's json.dumps writes NaN, Infinity and -Infinity as bare words, which JSON.parse rejects.
 * Replaces them with null outside string literals. Returns the input unchanged when none occur.
 */
export function replacePythonNonFinite(raw: string): string {
	if (!/NaN|Infinity/.test(raw)) {
		return raw;
	}

	let out = '';
	let last = 0;
	let inString = false;
	for (let i = 0; i < raw.length; i++) {
		const c = raw.charCodeAt(i);
		if (inString) {
			if (c === 0x5c) {
				i++;
			} else if (c === 0x22) {
				inString = false;
			}

			continue;
		}

		if (c === 0x22) {
			inString = true;
			continue;
		}

		let word = '';
		if (raw.startsWith('NaN', i)) {
			word = 'NaN';
		} else if (raw.startsWith('-Infinity', i)) {
			word = '-Infinity';
		} else if (raw.startsWith('Infinity', i)) {
			word = 'Infinity';
		}

		if (word) {
			out += raw.slice(last, i) + 'null';
			i += word.length - 1;
			last = i + 1;
		}
	}

	return out + raw.slice(last);
}

/**
 * Pretty-prints a metadata value that holds a JSON object or array (2-space indent), for the Metadata
 * tab. Returns null for anything else, for values over maxPrettyJsonChars and for nesting deeper than
 * maxJsonDepth. The result is NOT sanitised: JSON.stringify escapes C0 controls but not DEL, C1 or
 * bidi characters, so pass each line through sanitizeText/sanitizeLine before display.
 */
export function prettyJson(raw: string): string | null {
	if (typeof raw !== 'string' || raw.length > maxPrettyJsonChars) {
		return null;
	}

	const trimmed = raw.trim();
	const first = trimmed.charCodeAt(0);
	if (first !== 0x7b && first !== 0x5b) {
		return null;
	}

	let value: unknown;
	try {
		value = JSON.parse(trimmed);
	} catch {
		try {
			value = JSON.parse(replacePythonNonFinite(trimmed));
		} catch {
			return null;
		}
	}

	if (value === null || typeof value !== 'object' || jsonDepth(value) === Number.POSITIVE_INFINITY) {
		return null;
	}

	return JSON.stringify(value, null, 2);
}
