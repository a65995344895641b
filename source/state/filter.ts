// The `/` filter of the file list: free text over name and every metadata field, plus simple field
// queries (`optimizer:prodigy`, `rank>=32`, `arch:sdxl`, `-tag:solo`, `size<100mb`, `is:new`).
// Parsing is separate from matching so the parser is unit-tested and the list only re-parses on edit.

export type FilterOp = ':' | '=' | '!=' | '>=' | '<=' | '>' | '<';

export type FilterTerm =
	| {kind: 'text'; text: string; negate: boolean}
	| {kind: 'field'; field: string; op: FilterOp; value: string; number: number | null; negate: boolean}
	| {kind: 'flag'; flag: FilterFlag; negate: boolean};

export type FilterFlag = 'new' | 'marked' | 'failed' | 'loading';

export type ParsedFilter = {
	source: string;
	terms: FilterTerm[];
	/** Problems shown under the filter input; the offending terms are dropped. */
	errors: string[];
};

/** What a file offers to the filter. Values are already sanitised; strings compare case-insensitively. */
export type FilterSubject = {
	/** Known field (canonical name, see `fieldAliases`) → value; undefined when the file lacks it. */
	field: (name: CanonicalField) => string | number | undefined;
	/** Raw metadata, for keys that are not known fields (`ss_seed:42`, `modelspec.author:me`). */
	metadata: Readonly<Record<string, string>> | undefined;
	/** Tag names from the tag-frequency metadata (lower case). */
	tags: () => readonly string[];
	/** Lower-case text over name, folder and every metadata key and value. */
	haystack: () => string;
	flags: Readonly<Record<FilterFlag, boolean>>;
};

export const canonicalFields = [
	'name',
	'folder',
	'arch',
	'type',
	'rank',
	'alpha',
	'epoch',
	'size',
	'output',
	'optimizer',
	'lr',
	'steps',
	'title',
	'dtype',
	'error',
	'base',
	'resolution',
	'scheduler',
] as const;

export type CanonicalField = (typeof canonicalFields)[number];

const fieldAliases: Readonly<Record<string, CanonicalField>> = {
	name: 'name',
	file: 'name',
	folder: 'folder',
	dir: 'folder',
	path: 'folder',
	arch: 'arch',
	base_arch: 'arch',
	type: 'type',
	network: 'type',
	algo: 'type',
	rank: 'rank',
	dim: 'rank',
	alpha: 'alpha',
	epoch: 'epoch',
	size: 'size',
	output: 'output',
	output_name: 'output',
	optimizer: 'optimizer',
	opt: 'optimizer',
	lr: 'lr',
	learning_rate: 'lr',
	steps: 'steps',
	title: 'title',
	dtype: 'dtype',
	error: 'error',
	reason: 'error',
	base: 'base',
	model: 'base',
	resolution: 'resolution',
	res: 'resolution',
	scheduler: 'scheduler',
};

/** Fields whose values are numbers: `:` means equality for them, and comparisons are allowed. */
const numericFields: ReadonlySet<CanonicalField> = new Set(['rank', 'alpha', 'epoch', 'size', 'lr', 'steps']);

const flagNames: Readonly<Record<string, FilterFlag>> = {
	new: 'new',
	marked: 'marked',
	failed: 'failed',
	error: 'failed',
	broken: 'failed',
	loading: 'loading',
};

const sizeUnits: Readonly<Record<string, number>> = {
	'': 1,
	b: 1,
	k: 1024,
	kb: 1024,
	kib: 1024,
	m: 1024 ** 2,
	mb: 1024 ** 2,
	mib: 1024 ** 2,
	g: 1024 ** 3,
	gb: 1024 ** 3,
	gib: 1024 ** 3,
};

/** Splits on whitespace, keeping "double quoted" parts (quotes removed) inside one token. */
export function tokenize(text: string): string[] {
	const tokens: string[] = [];
	let current = '';
	let inQuote = false;
	let started = false;
	for (const ch of text) {
		if (ch === '"') {
			inQuote = !inQuote;
			started = true;
			continue;
		}

		if (!inQuote && /\s/.test(ch)) {
			if (started) {
				tokens.push(current);
			}

			current = '';
			started = false;
			continue;
		}

		current += ch;
		started = true;
	}

	if (started) {
		tokens.push(current);
	}

	return tokens;
}

function parseNumber(field: CanonicalField | undefined, value: string): number | null {
	const trimmed = value.trim().toLowerCase();
	if (trimmed === '') {
		return null;
	}

	if (field === 'size') {
		const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/.exec(trimmed);
		const unit = match ? sizeUnits[match[2] ?? ''] : undefined;
		return match && unit !== undefined ? Number(match[1]) * unit : null;
	}

	const number = Number(trimmed);
	return Number.isFinite(number) ? number : null;
}

const fieldPattern = /^([A-Za-z_][\w.\-/]*?)(!=|>=|<=|:|=|>|<)(.*)$/s;

export function parseFilter(source: string): ParsedFilter {
	const terms: FilterTerm[] = [];
	const errors: string[] = [];
	for (const rawToken of tokenize(source)) {
		let token = rawToken;
		let negate = false;
		if (token.startsWith('-') && token.length > 1) {
			negate = true;
			token = token.slice(1);
		}

		const match = fieldPattern.exec(token);
		if (!match) {
			terms.push({kind: 'text', text: token.toLowerCase(), negate});
			continue;
		}

		const name = (match[1] ?? '').toLowerCase();
		const op = match[2] as FilterOp;
		const value = match[3] ?? '';
		if (name === 'is' || name === 'has') {
			const flag = flagNames[value.toLowerCase()];
			if (flag === undefined || op !== ':') {
				errors.push(`${token}: try is:new, is:marked, is:failed or is:loading`);
				continue;
			}

			terms.push({kind: 'flag', flag, negate});
			continue;
		}

		if (value === '') {
			errors.push(`${token}: needs a value after ${op}`);
			continue;
		}

		const canonical = fieldAliases[name];
		const number = parseNumber(canonical, value);
		const comparison = op === '>=' || op === '<=' || op === '>' || op === '<';
		if (comparison && number === null) {
			errors.push(`${token}: ${op} needs a number${canonical === 'size' ? ' (e.g. 100mb)' : ''}`);
			continue;
		}

		terms.push({kind: 'field', field: canonical ?? name, op, value: value.toLowerCase(), number, negate});
	}

	return {source, terms, errors};
}

export function isEmptyFilter(filter: ParsedFilter): boolean {
	return filter.terms.length === 0;
}

function compareNumbers(actual: number, op: FilterOp, expected: number): boolean {
	switch (op) {
		case '>=': {
			return actual >= expected;
		}

		case '<=': {
			return actual <= expected;
		}

		case '>': {
			return actual > expected;
		}

		case '<': {
			return actual < expected;
		}

		case '!=': {
			return actual !== expected;
		}

		default: {
			// Floats from metadata ("1e-4") and typed values ("0.0001") are equal within rounding.
			return Math.abs(actual - expected) <= Math.abs(expected) * 1e-9;
		}
	}
}

function matchValue(actual: string | number | undefined, term: Extract<FilterTerm, {kind: 'field'}>, numeric: boolean): boolean {
	if (actual === undefined) {
		return false;
	}

	const actualNumber = typeof actual === 'number' ? actual : numeric ? Number(actual) : Number.NaN;
	if (term.number !== null && Number.isFinite(actualNumber) && (numeric || term.op !== ':')) {
		return compareNumbers(actualNumber, term.op, term.number);
	}

	if (term.op === '>=' || term.op === '<=' || term.op === '>' || term.op === '<') {
		const parsed = Number(actual);
		return term.number !== null && Number.isFinite(parsed) && compareNumbers(parsed, term.op, term.number);
	}

	const text = String(actual).toLowerCase();
	switch (term.op) {
		case '=': {
			return text === term.value;
		}

		case '!=': {
			return text !== term.value;
		}

		default: {
			return text.includes(term.value);
		}
	}
}

function metadataValue(metadata: Readonly<Record<string, string>> | undefined, field: string): string | undefined {
	if (!metadata) {
		return undefined;
	}

	// Exact key first, then the kohya and modelspec spellings of the same name, then any key that ends in it.
	for (const key of [field, `ss_${field}`, `modelspec.${field}`]) {
		const value = metadata[key];
		if (value !== undefined) {
			return value;
		}
	}

	const lower = field.toLowerCase();
	for (const [key, value] of Object.entries(metadata)) {
		if (key.toLowerCase() === lower || key.toLowerCase() === `ss_${lower}`) {
			return value;
		}
	}

	return undefined;
}

function matchTerm(term: FilterTerm, subject: FilterSubject): boolean {
	switch (term.kind) {
		case 'text': {
			return subject.haystack().includes(term.text);
		}

		case 'flag': {
			return subject.flags[term.flag];
		}

		case 'field': {
			if (term.field === 'tag' || term.field === 'tags') {
				return subject.tags().some(tag => (term.op === '=' ? tag === term.value : tag.includes(term.value)));
			}

			if ((canonicalFields as readonly string[]).includes(term.field)) {
				const field = term.field as CanonicalField;
				const value = subject.field(field);
				if (value !== undefined) {
					return matchValue(value, term, numericFields.has(field));
				}
			}

			return matchValue(metadataValue(subject.metadata, term.field), term, false);
		}
	}
}

export function matchFilter(filter: ParsedFilter, subject: FilterSubject): boolean {
	for (const term of filter.terms) {
		const hit = matchTerm(term, subject);
		if (hit === term.negate) {
			return false;
		}
	}

	return true;
}

/** One-line reference shown under the filter input. */
export const filterHint = 'text · field:value · rank>=32 · arch:sdxl · optimizer:prodigy · tag:x · size<100mb · is:new|marked|failed · -term negates';
