// A strict, single-pass parser for the JSON header of a .safetensors file.
//
// Why not JSON.parse: it silently keeps the last of duplicate keys (so two readers can disagree
// about which tensor or metadata value a file holds), its error messages quote the offending
// input (escape sequences from a hostile file would reach the terminal), and on headers with a
// million entries it builds a million generic objects first (seconds and ~1 GB). This parser
// reads the header grammar directly into TensorInfo records, rejects duplicates at every level,
// bounds nesting the way serde_json (the reference reader) does, and reports positions only.
//
// It reads the UTF-8 bytes, not a decoded string: the caller validates UTF-8 once (simdutf, far
// faster than decoding), and names and values that are plain ASCII, which is nearly all of a
// header, become strings straight from their bytes. Decoding 130 KB first and then scanning
// UTF-16 cost twice as much on a full SD1.5 header.
import {Buffer} from 'node:buffer';
import {dtypeSize, isDType} from './dtypes.js';
import {findSharedTable, shareTable, structureSharingEnabled} from './structure-cache.js';
import type {DType, TensorInfo} from './types.js';

/** serde_json's default recursion limit, which the reference safetensors reader inherits. */
export const maxHeaderDepth = 128;

/** More dimensions than any framework supports; refusing them keeps hostile shapes small. */
export const maxTensorRank = 64;

export type ParsedHeaderJson = {
	/** Sorted by begin offset (then end). Shared with other headers (and frozen) when cached. */
	tensors: readonly TensorInfo[];
	byName: ReadonlyMap<string, TensorInfo>;
	/** Null-prototype string map. */
	metadata: Record<string, string>;
};

/** A header that breaks the format. `message` is one line and never quotes file content verbatim. */
export class HeaderFormatError extends Error {
	constructor(message: string) {
		super(message);
		this.name = 'HeaderFormatError';
	}
}

const quote = 0x22;
const backslash = 0x5c;
const colon = 0x3a;
const comma = 0x2c;
const openBrace = 0x7b;
const closeBrace = 0x7d;
const openBracket = 0x5b;
const closeBracket = 0x5d;
const minus = 0x2d;
const digit0 = 0x30;
const digit9 = 0x39;

// Interned strings for the fast path: most keys and dtypes of a header are one of these.
const entryKeys = ['dtype', 'shape', 'data_offsets'] as const;
const commonDTypes = ['F16', 'F32', 'BF16', 'F64', 'F8_E4M3', 'F8_E5M2', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL'] as const;

type ValueType = 'object' | 'array' | 'string' | 'number' | 'boolean' | 'null';

/**
 * Show an untrusted short string (a dtype) inside a one-line reason: printable ASCII only,
 * everything else escaped, at most `limit` characters.
 */
export function describeUntrusted(text: string, limit = 16): string {
	let out = '';
	for (const char of text.slice(0, limit)) {
		const code = char.codePointAt(0)!;
		if (code >= 0x20 && code < 0x7f && char !== '"' && char !== '\\') {
			out += char;
		} else if (code <= 0xff) {
			out += `\\x${code.toString(16).padStart(2, '0')}`;
		} else {
			out += `\\u{${code.toString(16)}}`;
		}
	}

	return `"${out}${text.length > limit ? '…' : ''}"`;
}

function describeShape(shape: readonly number[]): string {
	if (shape.length <= 8) {
		return `[${shape.join(', ')}]`;
	}

	return `[${shape.slice(0, 4).join(', ')}, … (${shape.length} dims)]`;
}

/** Byte images of the interned strings, with their closing quote, for knownString. */
function quotedBytes(words: readonly string[]): Array<{word: string; bytes: Uint8Array}> {
	return words.map(word => ({word, bytes: Buffer.from(`${word}"`, 'latin1')}));
}

const entryKeyBytes = quotedBytes(entryKeys);
const commonDTypeBytes = quotedBytes(commonDTypes);
const dtypePrefix = Buffer.from('{"dtype":"', 'latin1');
const shapePrefix = Buffer.from(',"shape":[', 'latin1');
const offsetsPrefix = Buffer.from(',"data_offsets":[', 'latin1');

/** Whether `image` is at `pos` in `bytes`. */
function bytesAt(bytes: Uint8Array, pos: number, image: Uint8Array): boolean {
	for (let i = 0; i < image.length; i++) {
		if (bytes[pos + i] !== image[i]) {
			return false;
		}
	}

	return true;
}

/** A tensor entry read by the fast path: validated by checkEntry like any other. */
type CanonicalEntry = {dtype: string; shape: number[]; begin: number; end: number};

/**
 * A JSON integer of 1–15 digits at `pos` (no sign, no leading zero, no fraction or exponent: those
 * go to the general parser), with the position after it.
 */
function canonicalInteger(bytes: Uint8Array, pos: number): {value: number; end: number} | undefined {
	let code = bytes[pos] ?? -1;
	if (code === digit0) {
		const next = bytes[pos + 1] ?? -1;
		return (next >= digit0 && next <= digit9) || next === 0x2e || next === 0x65 || next === 0x45 ? undefined : {value: 0, end: pos + 1};
	}

	let value = 0;
	let end = pos;
	while (code >= digit0 && code <= digit9) {
		value = (value * 10) + (code - digit0);
		end++;
		code = bytes[end] ?? -1;
	}

	if (end === pos || end - pos > 15 || code === 0x2e || code === 0x65 || code === 0x45) {
		return undefined;
	}

	return {value, end};
}

class Parser {
	readonly bytes: Buffer;
	readonly length: number;
	pos = 0;

	constructor(bytes: Uint8Array) {
		this.bytes = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
		this.length = bytes.byteLength;
	}

	fail(what: string): never {
		if (this.pos >= this.length) {
			throw new HeaderFormatError('header is not valid JSON (unexpected end of header)');
		}

		throw new HeaderFormatError(`header is not valid JSON (${what} at byte ${this.pos})`);
	}

	ws(): void {
		const {bytes, length} = this;
		let pos = this.pos;
		while (pos < length) {
			const code = bytes[pos]!;
			if (code !== 0x20 && code !== 0x0a && code !== 0x0d && code !== 0x09) {
				break;
			}

			pos++;
		}

		this.pos = pos;
	}

	peek(): number {
		return this.pos < this.length ? this.bytes[this.pos]! : -1;
	}

	expect(code: number, what: string): void {
		this.ws();
		if (this.peek() !== code) {
			this.fail(`expected ${what}`);
		}

		this.pos++;
	}

	/** A JSON string starting at the opening quote; returns its decoded value. */
	string(): string {
		const {bytes, length} = this;
		const start = this.pos + 1;
		let pos = start;
		let escaped = false;
		let ascii = true;
		for (;;) {
			if (pos >= length) {
				this.pos = length;
				this.fail('unterminated string');
			}

			const code = bytes[pos]!;
			if (code === quote) {
				break;
			}

			if (code === backslash) {
				escaped = true;
				const next = bytes[pos + 1] ?? -1;
				if (next === 0x75 /* u */) {
					for (let i = 2; i < 6; i++) {
						const hex = bytes[pos + i] ?? -1;
						const isHex = (hex >= digit0 && hex <= digit9) || (hex >= 0x41 && hex <= 0x46) || (hex >= 0x61 && hex <= 0x66);
						if (!isHex) {
							this.pos = Math.min(pos + i, length);
							this.fail('bad \\u escape');
						}
					}

					pos += 6;
					continue;
				}

				// " \ / b f n r t
				if (next === quote || next === backslash || next === 0x2f || next === 0x62 || next === 0x66 || next === 0x6e || next === 0x72 || next === 0x74) {
					pos += 2;
					continue;
				}

				this.pos = Math.min(pos + 1, length);
				this.fail('bad escape');
			}

			if (code < 0x20) {
				this.pos = pos;
				this.fail('control character in a string');
			}

			if (code >= 0x80) {
				ascii = false;
			}

			pos++;
		}

		this.pos = pos + 1;
		if (escaped) {
			// The escapes were validated above, so JSON.parse of the quoted slice cannot fail.
			return JSON.parse(bytes.toString('utf8', start - 1, pos + 1)) as string;
		}

		// The caller validated UTF-8 for the whole header, and a quote never sits inside a
		// multi-byte sequence, so the slice is valid on its own.
		return ascii ? bytes.toString('latin1', start, pos) : bytes.toString('utf8', start, pos);
	}

	/**
	 * A JSON number token. Returns its value when it is a non-negative integer written without
	 * fraction or exponent that fits exactly in a double, else -1 (still validating the syntax).
	 */
	number(): number {
		const {bytes, length} = this;
		const start = this.pos;
		let pos = start;
		let negative = false;
		if (bytes[pos] === minus) {
			negative = true;
			pos++;
		}

		const intStart = pos;
		let code = bytes[pos] ?? -1;
		if (code === digit0) {
			pos++;
		} else if (code > digit0 && code <= digit9) {
			while (pos < length && (code = bytes[pos]!) >= digit0 && code <= digit9) {
				pos++;
			}
		} else {
			this.pos = pos;
			this.fail('bad number');
		}

		const intEnd = pos;
		let integral = true;
		if (bytes[pos] === 0x2e /* . */) {
			integral = false;
			pos++;
			const fracStart = pos;
			while (pos < length && (code = bytes[pos]!) >= digit0 && code <= digit9) {
				pos++;
			}

			if (pos === fracStart) {
				this.pos = pos;
				this.fail('bad number');
			}
		}

		code = bytes[pos] ?? -1;
		if (code === 0x65 || code === 0x45 /* e E */) {
			integral = false;
			pos++;
			code = bytes[pos] ?? -1;
			if (code === 0x2b || code === minus) {
				pos++;
			}

			const expStart = pos;
			while (pos < length && (code = bytes[pos]!) >= digit0 && code <= digit9) {
				pos++;
			}

			if (pos === expStart) {
				this.pos = pos;
				this.fail('bad number');
			}
		}

		this.pos = pos;
		if (!integral || negative) {
			return -1;
		}

		if (intEnd - intStart <= 15) {
			// Fifteen digits always fit a double exactly; no substring needed.
			let value = 0;
			for (let i = intStart; i < intEnd; i++) {
				value = (value * 10) + (bytes[i]! - digit0);
			}

			return value;
		}

		const value = Number(bytes.toString('latin1', intStart, intEnd));
		return Number.isSafeInteger(value) ? value : -1;
	}

	/** If the string at the cursor is exactly one of `words` (plain, no escapes), consume it and return it. */
	knownString(words: ReadonlyArray<{word: string; bytes: Uint8Array}>): string | undefined {
		const {bytes, pos} = this;
		// The candidate starts after the opening quote; each image ends with the closing quote,
		// so prefixes do not match.
		const first = pos + 1;
		for (const {word, bytes: image} of words) {
			let matched = true;
			for (let i = 0; i < image.length; i++) {
				if (bytes[first + i] !== image[i]) {
					matched = false;
					break;
				}
			}

			if (matched) {
				this.pos = first + image.length;
				return word;
			}
		}

		return undefined;
	}

	literal(word: string): void {
		for (let i = 0; i < word.length; i++) {
			if (this.bytes[this.pos + i] !== word.charCodeAt(i)) {
				this.fail('unexpected character');
			}
		}

		this.pos += word.length;
	}

	/** Validate any JSON value without building it; returns its type. */
	skipValue(depth: number): ValueType {
		if (depth > maxHeaderDepth) {
			throw new HeaderFormatError(`header JSON nests deeper than ${maxHeaderDepth} levels`);
		}

		this.ws();
		const code = this.peek();
		switch (code) {
			case quote: {
				this.string();
				return 'string';
			}

			case openBrace: {
				this.pos++;
				// Objects of unknown purpose also must not hide a second value under one key.
				const seen = new Set<string>();
				for (let key = this.firstKey(); key !== undefined; key = this.nextKey()) {
					if (seen.has(key)) {
						throw new HeaderFormatError('header has a duplicate key');
					}

					seen.add(key);
					this.skipValue(depth + 1);
				}

				return 'object';
			}

			case openBracket: {
				this.pos++;
				for (let more = this.firstElement(); more; more = this.nextElement()) {
					this.skipValue(depth + 1);
				}

				return 'array';
			}

			case 0x74 /* t */: {
				this.literal('true');
				return 'boolean';
			}

			case 0x66 /* f */: {
				this.literal('false');
				return 'boolean';
			}

			case 0x6e /* n */: {
				this.literal('null');
				return 'null';
			}

			default: {
				if (code === minus || (code >= digit0 && code <= digit9)) {
					this.number();
					return 'number';
				}

				return this.fail('unexpected character');
			}
		}
	}

	// Members and elements are walked with first/next calls rather than callbacks: a closure per
	// tensor entry costs more than the parsing itself on headers with a million entries.

	/** After `{`: the first key (cursor then at its value), or undefined for `{}` (consumed). */
	firstKey(): string | undefined {
		this.ws();
		if (this.peek() === closeBrace) {
			this.pos++;
			return undefined;
		}

		return this.key();
	}

	/** After a member's value: the next key, or undefined once `}` is consumed. */
	nextKey(): string | undefined {
		this.ws();
		const code = this.peek();
		if (code === comma) {
			this.pos++;
			this.ws();
			return this.key();
		}

		if (code === closeBrace) {
			this.pos++;
			return undefined;
		}

		return this.fail('expected \',\' or \'}\'');
	}

	private key(): string {
		if (this.peek() !== quote) {
			this.fail('expected a key');
		}

		const key = this.knownString(entryKeyBytes) ?? this.string();
		this.expect(colon, '\':\'');
		this.ws();
		return key;
	}

	/** After `[`: true with the cursor at the first element, or false for `[]` (consumed). */
	firstElement(): boolean {
		this.ws();
		if (this.peek() === closeBracket) {
			this.pos++;
			return false;
		}

		return true;
	}

	/** After an element: true with the cursor at the next one, false once `]` is consumed. */
	nextElement(): boolean {
		this.ws();
		const code = this.peek();
		if (code === comma) {
			this.pos++;
			this.ws();
			return true;
		}

		if (code === closeBracket) {
			this.pos++;
			return false;
		}

		return this.fail('expected \',\' or \']\'');
	}

	/**
	 * The entry at the cursor if it is written exactly as the safetensors writers write it —
	 * `{"dtype":"F16","shape":[320,4],"data_offsets":[0,2560]}`, no spaces, common dtype, plain
	 * integers of at most 15 digits — consuming it; otherwise undefined with the cursor unmoved,
	 * and the general parser reads (and reports) it. Nearly every entry of a real header takes this
	 * path, which skips the key dispatch and duplicate checks a canonical entry cannot need.
	 */
	canonicalEntry(): CanonicalEntry | undefined {
		const {bytes} = this;
		let pos = this.pos;
		if (!bytesAt(bytes, pos, dtypePrefix)) {
			return undefined;
		}

		pos += dtypePrefix.length;
		let dtype: string | undefined;
		for (const {word, bytes: image} of commonDTypeBytes) {
			if (bytesAt(bytes, pos, image)) {
				dtype = word;
				pos += image.length;
				break;
			}
		}

		if (dtype === undefined || !bytesAt(bytes, pos, shapePrefix)) {
			return undefined;
		}

		pos += shapePrefix.length;
		const shape: number[] = [];
		if (bytes[pos] === closeBracket) {
			pos++;
		} else {
			for (;;) {
				const value = canonicalInteger(bytes, pos);
				if (value === undefined || shape.length >= maxTensorRank) {
					return undefined;
				}

				shape.push(value.value);
				pos = value.end;
				if (bytes[pos] === comma) {
					pos++;
				} else if (bytes[pos] === closeBracket) {
					pos++;
					break;
				} else {
					return undefined;
				}
			}
		}

		if (!bytesAt(bytes, pos, offsetsPrefix)) {
			return undefined;
		}

		pos += offsetsPrefix.length;
		const begin = canonicalInteger(bytes, pos);
		if (begin === undefined || bytes[begin.end] !== comma) {
			return undefined;
		}

		const end = canonicalInteger(bytes, begin.end + 1);
		if (end === undefined || bytes[end.end] !== closeBracket || bytes[end.end + 1] !== closeBrace) {
			return undefined;
		}

		this.pos = end.end + 2;
		return {dtype, shape, begin: begin.value, end: end.value};
	}

	/**
	 * An array of non-negative integers (at most `limit` kept; `limit + 1` values are returned when
	 * there are more), or undefined when it is anything else.
	 */
	integers(depth: number, limit: number): number[] | undefined {
		if (this.peek() !== openBracket) {
			this.skipValue(depth);
			return undefined;
		}

		this.pos++;
		const values: number[] = [];
		let valid = true;
		for (let more = this.firstElement(); more; more = this.nextElement()) {
			const code = this.peek();
			if (code === minus || (code >= digit0 && code <= digit9)) {
				const value = this.number();
				if (value < 0) {
					valid = false;
				} else if (values.length <= limit) {
					values.push(value);
				}
			} else {
				this.skipValue(depth + 1);
				valid = false;
			}
		}

		return valid ? values : undefined;
	}
}

function checkEntry(
	dtype: string | undefined,
	dtypeType: ValueType | undefined,
	shape: number[] | undefined,
	shapeSeen: boolean,
	offsets: number[] | undefined,
	offsetsSeen: boolean,
	dataSize: number,
): string | undefined {
	if (!isDType(dtype)) {
		if (dtype === undefined) {
			return dtypeType === undefined ? 'dtype is missing' : `unknown dtype (a JSON ${dtypeType})`;
		}

		return `unknown dtype ${describeUntrusted(dtype)}`;
	}

	if (!shape) {
		return shapeSeen ? 'shape is not a list of non-negative integers' : 'shape is missing';
	}

	if (shape.length > maxTensorRank) {
		return `shape has more than ${maxTensorRank} dimensions`;
	}

	if (!offsets || offsets.length !== 2) {
		return offsetsSeen ? 'data_offsets is not a pair of non-negative integers' : 'data_offsets is missing';
	}

	const begin = offsets[0]!;
	const end = offsets[1]!;
	if (end < begin) {
		return `data_offsets end ${end} before begin ${begin}`;
	}

	if (end > dataSize) {
		return `data_offsets end ${end} beyond the data area (${dataSize} bytes)`;
	}

	let elements = 1;
	for (const d of shape) {
		elements *= d;
	}

	const expected = elements * dtypeSize[dtype];
	if (expected !== end - begin) {
		const shown = Number.isSafeInteger(expected) ? String(expected) : 'too many';
		return `byte length ${end - begin} does not match shape ${describeShape(shape)} × ${dtype} (${shown})`;
	}

	return undefined;
}

/**
 * Parse and validate a header's JSON bytes, which the caller has checked are valid UTF-8.
 * `dataSize` (file size − 8 − header length) bounds every offset. Throws HeaderFormatError with a
 * one-line reason.
 */
export function parseHeaderJson(json: Uint8Array, dataSize: number): ParsedHeaderJson {
	const lead = structureSharingEnabled() ? leadingMetadata(json) : undefined;
	// Writers pad headers with spaces to a multiple of 8 bytes, so the padding after the last `}`
	// changes with the metadata's length; it is not part of the table.
	const tail = lead ? json.subarray(lead.tailStart, trimmedLength(json)) : undefined;
	if (lead && tail) {
		const shared = findSharedTable(tail);
		// The shared tail was validated as part of a whole header; only offsets depend on this file.
		if (shared && shared.maxEnd <= dataSize) {
			return {tensors: shared.tensors, byName: shared.byName, metadata: lead.metadata};
		}
	}

	const parsed = parseWholeHeader(json, dataSize, lead);
	if (tail) {
		shareTable(tail, parsed.tensors, parsed.byName);
	}

	return parsed;
}

/** Length of `json` without trailing JSON whitespace. */
function trimmedLength(json: Uint8Array): number {
	let end = json.length;
	while (end > 0) {
		const code = json[end - 1];
		if (code !== 0x20 && code !== 0x0a && code !== 0x0d && code !== 0x09) {
			break;
		}

		end--;
	}

	return end;
}

const metadataFirst = Buffer.from('{"__metadata__":', 'latin1');

/**
 * The `__metadata__` object of a header that starts with it (as the reference writer and kohya
 * write them), and where the rest begins; undefined for any other header, or one whose metadata
 * is invalid (the whole-header parse then reports it).
 */
type LeadingMetadata = {metadata: Record<string, string>; tailStart: number; parser: Parser};

function leadingMetadata(json: Uint8Array): LeadingMetadata | undefined {
	if (!bytesAt(json, 0, metadataFirst)) {
		return undefined;
	}

	const parser = new Parser(json);
	parser.pos = metadataFirst.length;
	parser.ws();
	try {
		return {metadata: parseMetadata(parser), tailStart: parser.pos, parser};
	} catch (error) {
		if (error instanceof HeaderFormatError) {
			return undefined;
		}

		throw error;
	}
}

/**
 * The whole header's parse. After leadingMetadata it goes on from where that stopped (the
 * parser sits after the metadata object), so the metadata is not parsed twice.
 */
function parseWholeHeader(json: Uint8Array, dataSize: number, lead?: LeadingMetadata): ParsedHeaderJson & {tensors: TensorInfo[]; byName: Map<string, TensorInfo>} {
	const parser = lead?.parser ?? new Parser(json);
	if (!lead) {
		parser.ws();
	}

	if (!lead && parser.peek() !== openBrace) {
		if (parser.pos >= parser.length) {
			throw new HeaderFormatError('header is blank');
		}

		const type = parser.skipValue(1);
		parser.ws();
		if (parser.pos < parser.length) {
			parser.fail('unexpected data after the JSON value');
		}

		throw new HeaderFormatError(`header is JSON ${type}, not an object`);
	}

	if (!lead) {
		parser.pos++;
	}

	const tensors: TensorInfo[] = [];
	const byName = new Map<string, TensorInfo>();
	let metadata = lead?.metadata;
	for (let key = lead ? parser.nextKey() : parser.firstKey(); key !== undefined; key = parser.nextKey()) {
		if (key === '__metadata__') {
			if (metadata) {
				throw new HeaderFormatError('header has duplicate __metadata__ entries');
			}

			metadata = parseMetadata(parser);
			continue;
		}

		if (byName.has(key)) {
			throw new HeaderFormatError('header has duplicate tensor names');
		}

		const info = parseEntry(parser, key, dataSize, tensors.length + 1);
		tensors.push(info);
		byName.set(key, info);
	}

	parser.ws();
	if (parser.pos < parser.length) {
		parser.fail('unexpected data after the header object');
	}

	sortAndCheckOverlaps(tensors);
	return {tensors, byName, metadata: metadata ?? Object.create(null) as Record<string, string>};
}

function parseMetadata(parser: Parser): Record<string, string> {
	if (parser.peek() !== openBrace) {
		const type = parser.skipValue(2);
		throw new HeaderFormatError(`__metadata__ is JSON ${type}, not an object`);
	}

	parser.pos++;
	const map = Object.create(null) as Record<string, string>;
	for (let key = parser.firstKey(); key !== undefined; key = parser.nextKey()) {
		if (Object.hasOwn(map, key)) {
			throw new HeaderFormatError('header has a duplicate key in __metadata__');
		}

		if (parser.peek() !== quote) {
			const type = parser.skipValue(3);
			throw new HeaderFormatError(`__metadata__ value is ${type === 'object' || type === 'array' ? `a JSON ${type}` : type}, not a string`);
		}

		map[key] = parser.string();
	}

	return map;
}

function parseEntry(parser: Parser, name: string, dataSize: number, index: number): TensorInfo {
	const canonical = parser.canonicalEntry();
	if (canonical) {
		const {dtype, shape, begin, end} = canonical;
		const problem = checkEntry(dtype, 'string', shape, true, [begin, end], true, dataSize);
		if (problem !== undefined) {
			throw new HeaderFormatError(`tensor #${index}: ${problem}`);
		}

		return {name, dtype: dtype as DType, shape, begin, end};
	}

	if (parser.peek() !== openBrace) {
		const type = parser.skipValue(2);
		throw new HeaderFormatError(`tensor #${index}: tensor entry is a JSON ${type}, not an object`);
	}

	parser.pos++;
	let dtype: string | undefined;
	let dtypeType: ValueType | undefined;
	let shape: number[] | undefined;
	let shapeSeen = false;
	let offsets: number[] | undefined;
	let offsetsSeen = false;
	let unknownKeys: Set<string> | undefined;
	for (let key = parser.firstKey(); key !== undefined; key = parser.nextKey()) {
		let duplicate: boolean;
		switch (key) {
			case 'dtype': {
				duplicate = dtypeType !== undefined;
				if (parser.peek() === quote) {
					dtype = parser.knownString(commonDTypeBytes) ?? parser.string();
					dtypeType = 'string';
				} else {
					dtypeType = parser.skipValue(3);
				}

				break;
			}

			case 'shape': {
				duplicate = shapeSeen;
				shapeSeen = true;
				shape = parser.integers(3, maxTensorRank);
				break;
			}

			case 'data_offsets': {
				duplicate = offsetsSeen;
				offsetsSeen = true;
				offsets = parser.integers(3, 2);
				break;
			}

			default: {
				// Unknown fields are ignored, as the reference reader does, but still validated.
				unknownKeys ??= new Set();
				duplicate = unknownKeys.has(key);
				unknownKeys.add(key);
				parser.skipValue(3);
			}
		}

		if (duplicate) {
			throw new HeaderFormatError('header has a duplicate key inside a tensor entry');
		}
	}

	const problem = checkEntry(dtype, dtypeType, shape, shapeSeen, offsets, offsetsSeen, dataSize);
	if (problem !== undefined) {
		throw new HeaderFormatError(`tensor #${index}: ${problem}`);
	}

	return {name, dtype: dtype as DType, shape: shape!, begin: offsets![0]!, end: offsets![1]!};
}

function sortAndCheckOverlaps(tensors: TensorInfo[]): void {
	let sorted = true;
	for (let i = 1; i < tensors.length; i++) {
		const a = tensors[i - 1]!;
		const b = tensors[i]!;
		if (a.begin > b.begin || (a.begin === b.begin && a.end > b.end)) {
			sorted = false;
			break;
		}
	}

	if (!sorted) {
		tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
	}

	let previousEnd = 0;
	for (const [index, tensor] of tensors.entries()) {
		// Zero-length tensors may share an offset with their neighbour.
		if (tensor.begin < previousEnd && tensor.end > tensor.begin) {
			throw new HeaderFormatError(`tensor #${index + 1} (in offset order) overlaps the previous tensor's bytes`);
		}

		previousEnd = Math.max(previousEnd, tensor.end);
	}
}
