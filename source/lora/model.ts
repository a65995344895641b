// The LoRA model of a file: modules with their algorithm, shapes, rank, alpha, scale and block,
// plus the file's key style, network type and base architecture. Built from the safetensors
// header alone (names, shapes, dtypes, metadata); alpha tensor values are optional input.
// Never throws: odd input becomes `warnings` and `unknownTensors`.
//
// LoraModule.tensors roles (role → tensor key) per algo:
//   lora / locon-tucker: down, up, [mid], [alpha], [dora_scale], [up_bias] (PEFT lora_B.bias)
//     (PEFT lora_A/lora_B, diffusers .lora.down/.up and cloneofsimo :down/:up are also down/up)
//   loha: hada_w1_a, hada_w1_b, hada_w2_a, hada_w2_b, [hada_t1, hada_t2], [alpha], [dora_scale]
//   lokr: lokr_w1 | lokr_w1_a+lokr_w1_b, lokr_w2 | lokr_w2_a+lokr_w2_b, [lokr_t2], [alpha], [dora_scale]
//   glora: a1, a2, b1, b2, [bm], [alpha]     ia3: weight, [on_input]
//   oft / boft: oft_blocks, [rescale], [alpha]   full: diff, [diff_b]   norm: w_norm, [b_norm]
// DoRA's dora_scale is stored as LyCORIS writes it (out×1 or 1×in); PEFT lora_magnitude_vector maps to it.
import {detectArchFromWeights, metadataArchOf, formatArch, type ArchProbe} from './arch.js';
import {blockOf, blockOrderOf} from './blocks.js';
import {
	mapCloneofsimoTextEncoder,
	mapCloneofsimoUnet,
	modulePathOf,
	parseTensorKey,
	quoteKey,
	type KeyDialect,
} from './key-styles.js';
import type {
	AlphaSource,
	Arch,
	Component,
	KeyStyle,
	LayerKind,
	LoraModel,
	LoraModule,
	ModuleAlgo,
	NetworkType,
	SafetensorsHeader,
	TensorInfo,
} from './types.js';
import {decodeToFloat32} from './dtypes.js';
import {mostCommon} from './most-common.js';
import {isSharedTable} from './structure-cache.js';

/** Values of 0-d `alpha` tensors by tensor key (see loadLoraModel / alphaTensorKeys). */
export type AlphaValues = ReadonlyMap<string, number>;

type Group = {
	name: string;
	parts: Map<string, string>;
	/** Dialect of the first part that names one (alpha/dora_scale do not). */
	dialect: KeyDialect | null;
	order: number;
};

type Draft = {
	name: string;
	dialect: KeyDialect | null;
	algo: ModuleAlgo;
	kind: LayerKind;
	/** False when the kernel was flattened into the factors (LoHa/LoKr/OFT): name decides. */
	kindKnown: boolean;
	rank: number | null;
	/** LoKr with neither factor decomposed: scale is 1 whatever alpha says. */
	unitScale: boolean;
	outDim: number;
	inDim: number;
	kernel: [number, number] | null;
	tensors: Record<string, string>;
	hasDora: boolean;
	needsBase: boolean;
	component: Component;
	path: string;
	rootPrefix: string;
	order: number;
	splitQkv?: number;
};

/** Warnings grouped by message so a broken file yields a few lines, not thousands. */
class WarningSink {
	private readonly entries = new Map<string, {count: number; example: string}>();

	add(message: string, example = ''): void {
		const entry = this.entries.get(message);
		if (entry) {
			entry.count++;
		} else {
			this.entries.set(message, {count: 1, example});
		}
	}

	lines(): string[] {
		return [...this.entries].map(([message, {count, example}]) => {
			const suffix = example ? ` (${count === 1 ? '' : `${count}×, e.g. `}${quoteKey(example)})` : count > 1 ? ` (${count}×)` : '';
			return `${message}${suffix}`;
		});
	}
}

const roleSets: ReadonlyArray<[ModuleAlgo | 'lora-any', ReadonlySet<string>]> = [
	['loha', new Set(['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b', 'hada_t1', 'hada_t2'])],
	['lokr', new Set(['lokr_w1', 'lokr_w1_a', 'lokr_w1_b', 'lokr_w2', 'lokr_w2_a', 'lokr_w2_b', 'lokr_t2'])],
	['oft', new Set(['oft_blocks', 'rescale'])],
	['glora', new Set(['a1', 'a2', 'b1', 'b2', 'bm'])],
	['full', new Set(['diff', 'diff_b'])],
	['norm', new Set(['w_norm', 'b_norm'])],
	['lora-any', new Set(['down', 'up', 'mid', 'down_bias', 'up_bias'])],
	['ia3', new Set(['weight', 'on_input'])],
];
const commonRoles = new Set(['alpha', 'dora_scale']);

function isDim(value: unknown): value is number {
	return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
}

function product(values: readonly number[]): number {
	return values.reduce((a, b) => a * b, 1);
}

class ShapeError extends Error {}

type Shapes = {
	get(role: string): readonly number[] | undefined;
	need(role: string, ranks: number[]): readonly number[];
};

function shapesOf(group: Group, header: SafetensorsHeader): Shapes {
	const get = (role: string): readonly number[] | undefined => {
		const key = group.parts.get(role);
		return key === undefined ? undefined : header.byName.get(key)?.shape;
	};

	return {
		get,
		need(role, ranks) {
			const shape = get(role);
			if (!shape) {
				throw new ShapeError(`missing ${role}`);
			}

			if (!ranks.includes(shape.length) || !shape.every(d => isDim(d))) {
				throw new ShapeError(`${role} has shape [${shape.join(',')}]`);
			}

			return shape;
		},
	};
}

function convKind(kh: number, kw: number): LayerKind {
	return kh === 1 && kw === 1 ? 'conv1x1' : 'convkxk';
}

type Dims = Pick<Draft, 'algo' | 'kind' | 'kindKnown' | 'rank' | 'unitScale' | 'outDim' | 'inDim' | 'kernel'>;

function loraDims(s: Shapes): Dims {
	const hasDown = s.get('down') !== undefined;
	const hasUp = s.get('up') !== undefined;
	if (!hasDown) {
		throw new ShapeError(hasUp ? 'up without down' : 'mid without down/up');
	}

	if (!hasUp) {
		throw new ShapeError('down without up');
	}

	const down = s.need('down', [2, 4]);
	const up = s.need('up', [2, 4]);
	const rank = down[0]!;
	if (s.get('mid')) {
		// LoCon Tucker: down r×in×1×1, mid r×r×kh×kw, up out×r×1×1.
		const mid = s.need('mid', [4]);
		if (down.length !== 4 || up.length !== 4 || down[2] !== 1 || down[3] !== 1 || mid[1] !== rank || up[1] !== mid[0]) {
			throw new ShapeError(`Tucker shapes do not chain: down [${down.join(',')}], mid [${mid.join(',')}], up [${up.join(',')}]`);
		}

		const [kh, kw] = [mid[2]!, mid[3]!];
		return {algo: 'locon-tucker', kind: convKind(kh, kw), kindKnown: true, rank, unitScale: false, outDim: up[0]!, inDim: down[1]! * kh * kw, kernel: [kh, kw]};
	}

	if (up[1] !== rank) {
		throw new ShapeError(`rank mismatch: down has ${rank} rows, up has ${up[1]} columns`);
	}

	if (down.length === 2) {
		if (up.length !== 2) {
			throw new ShapeError(`linear down [${down.join(',')}] with conv up [${up.join(',')}]`);
		}

		return {algo: 'lora', kind: 'linear', kindKnown: true, rank, unitScale: false, outDim: up[0]!, inDim: down[1]!, kernel: null};
	}

	if (up.length !== 4 || up[2] !== 1 || up[3] !== 1) {
		throw new ShapeError(`conv down [${down.join(',')}] with up [${up.join(',')}]`);
	}

	const [kh, kw] = [down[2]!, down[3]!];
	return {algo: 'lora', kind: convKind(kh, kw), kindKnown: true, rank, unitScale: false, outDim: up[0]!, inDim: down[1]! * kh * kw, kernel: [kh, kw]};
}

function lohaDims(s: Shapes): Dims {
	const tucker = s.get('hada_t1') !== undefined || s.get('hada_t2') !== undefined;
	if (tucker) {
		// Tucker: t r×r×kh×kw, w?_a r×out, w?_b r×in.
		const t1 = s.need('hada_t1', [4]);
		const t2 = s.need('hada_t2', [4]);
		const w1a = s.need('hada_w1_a', [2]);
		const w1b = s.need('hada_w1_b', [2]);
		const w2a = s.need('hada_w2_a', [2]);
		const w2b = s.need('hada_w2_b', [2]);
		if (w1a[1] !== w2a[1] || w1b[1] !== w2b[1] || t1[2] !== t2[2] || t1[3] !== t2[3] || t1[0] !== w1a[0] || t1[1] !== w1b[0] || t2[0] !== w2a[0] || t2[1] !== w2b[0]) {
			throw new ShapeError('LoHa Tucker factors do not agree');
		}

		const [kh, kw] = [t1[2]!, t1[3]!];
		return {algo: 'loha', kind: convKind(kh, kw), kindKnown: true, rank: w1b[0]!, unitScale: false, outDim: w1a[1]!, inDim: w1b[1]! * kh * kw, kernel: [kh, kw]};
	}

	const w1a = s.need('hada_w1_a', [2]);
	const w1b = s.need('hada_w1_b', [2]);
	const w2a = s.need('hada_w2_a', [2]);
	const w2b = s.need('hada_w2_b', [2]);
	if (w1a[1] !== w1b[0] || w2a[1] !== w2b[0] || w1a[0] !== w2a[0] || w1b[1] !== w2b[1]) {
		throw new ShapeError(`LoHa factors do not agree: w1 [${w1a.join(',')}]·[${w1b.join(',')}], w2 [${w2a.join(',')}]·[${w2b.join(',')}]`);
	}

	// w?_b holds in·kh·kw flattened: the kernel is not visible, the module name decides.
	return {algo: 'loha', kind: 'linear', kindKnown: false, rank: w1b[0]!, unitScale: false, outDim: w1a[0]!, inDim: w1b[1]!, kernel: null};
}

function lokrDims(s: Shapes): Dims {
	let a: number;
	let c: number;
	let rank: number | null = null;
	if (s.get('lokr_w1')) {
		const w1 = s.need('lokr_w1', [2]);
		[a, c] = [w1[0]!, w1[1]!];
	} else {
		const w1a = s.need('lokr_w1_a', [2]);
		const w1b = s.need('lokr_w1_b', [2]);
		if (w1a[1] !== w1b[0]) {
			throw new ShapeError('LoKr w1 factors do not chain');
		}

		[a, c] = [w1a[0]!, w1b[1]!];
		rank = w1b[0]!;
	}

	let b: number;
	let d: number;
	let kernel: [number, number] | null = null;
	if (s.get('lokr_w2')) {
		const w2 = s.need('lokr_w2', [2, 4]);
		[b, d] = [w2[0]!, w2[1]!];
		if (w2.length === 4) {
			kernel = [w2[2]!, w2[3]!];
		}
	} else if (s.get('lokr_t2')) {
		// Tucker: t2 r×r×kh×kw, w2_a r×b, w2_b r×d.
		const t2 = s.need('lokr_t2', [4]);
		const w2a = s.need('lokr_w2_a', [2]);
		const w2b = s.need('lokr_w2_b', [2]);
		if (t2[0] !== w2a[0] || t2[1] !== w2b[0]) {
			throw new ShapeError('LoKr Tucker factors do not chain');
		}

		[b, d] = [w2a[1]!, w2b[1]!];
		kernel = [t2[2]!, t2[3]!];
		rank = w2b[0]!;
	} else {
		const w2a = s.need('lokr_w2_a', [2]);
		const w2b = s.need('lokr_w2_b', [2, 4]);
		if (w2a[1] !== w2b[0]) {
			throw new ShapeError('LoKr w2 factors do not chain');
		}

		[b, d] = [w2a[0]!, w2b[1]!];
		if (w2b.length === 4) {
			kernel = [w2b[2]!, w2b[3]!];
		}

		rank = w2b[0]!;
	}

	const k = kernel ? kernel[0] * kernel[1] : 1;
	const kind: LayerKind = kernel ? convKind(kernel[0], kernel[1]) : 'linear';
	return {algo: 'lokr', kind, kindKnown: kernel !== null, rank, unitScale: rank === null, outDim: a * b, inDim: c * d * k, kernel};
}

function gloraDims(s: Shapes): Dims {
	s.need('a1', [2, 4]);
	const a2 = s.need('a2', [2, 4]);
	const b1 = s.need('b1', [2, 4]);
	const b2 = s.need('b2', [2, 4]);
	const kernel: [number, number] | null = b2.length === 4 ? [b2[2]!, b2[3]!] : null;
	return {algo: 'glora', kind: kernel ? convKind(kernel[0], kernel[1]) : 'linear', kindKnown: true, rank: a2[0]!, unitScale: false, outDim: b1[0]!, inDim: product(b2.slice(1)), kernel};
}

function oftDims(s: Shapes): Dims {
	const blocks = s.need('oft_blocks', [3, 4]);
	const algo: ModuleAlgo = blocks.length === 4 ? 'boft' : 'oft';
	// n_blocks×b×b (BOFT: m×n_blocks×b×b) rotates the output features; the input side is not stored.
	const outDim = blocks.length === 4 ? blocks[1]! * blocks[2]! : blocks[0]! * blocks[1]!;
	return {algo, kind: 'linear', kindKnown: false, rank: null, unitScale: true, outDim, inDim: 0, kernel: null};
}

function fullDims(s: Shapes): Dims {
	const diff = s.need('diff', [1, 2, 4]);
	if (diff.length === 4) {
		return {algo: 'full', kind: convKind(diff[2]!, diff[3]!), kindKnown: true, rank: null, unitScale: true, outDim: diff[0]!, inDim: product(diff.slice(1)), kernel: [diff[2]!, diff[3]!]};
	}

	return {algo: 'full', kind: 'linear', kindKnown: diff.length === 2, rank: null, unitScale: true, outDim: diff[0]!, inDim: diff[1] ?? 0, kernel: null};
}

function normDims(s: Shapes): Dims {
	const w = s.get('w_norm') ? s.need('w_norm', [1]) : s.need('b_norm', [1]);
	return {algo: 'norm', kind: 'linear', kindKnown: true, rank: null, unitScale: true, outDim: w[0]!, inDim: 0, kernel: null};
}

function ia3Dims(s: Shapes): Dims {
	// A vector over out (or in, with on_input); stored flat or as out×1 / 1×in depending on the writer.
	const w = s.need('weight', [1, 2, 3, 4]);
	const length = product(w);
	if (length !== Math.max(...w)) {
		throw new ShapeError(`IA3 weight [${w.join(',')}] is not a vector`);
	}

	return {algo: 'ia3', kind: 'linear', kindKnown: false, rank: null, unitScale: true, outDim: length, inDim: 0, kernel: null};
}

const dimsByAlgo: Record<string, (s: Shapes) => Dims> = {
	loha: lohaDims,
	lokr: lokrDims,
	oft: oftDims,
	glora: gloraDims,
	full: fullDims,
	norm: normDims,
	'lora-any': loraDims,
	ia3: ia3Dims,
};

// Conv layers whose kernel LoHa/LoKr/OFT flatten away; recognised by name (kohya and LDM spellings).
const kxkConvNames = /(?:resnets_\d+_conv[12]|(?:down|up)samplers_\d+_conv|in_layers_2|out_layers_3|_op|^conv_in|^conv_out|output_blocks_\d+_\d+_conv)$/;
const oneByOneConvNames = /(?:conv_shortcut|skip_connection)$/;
const sd1ProjNames = /(?:attentions_\d+|input_blocks_\d+_1|middle_block_1|output_blocks_\d+_1)_proj_(?:in|out)$/;

function refineKindByName(draft: Draft, arch: Arch): void {
	if (draft.kindKnown || draft.component !== 'unet') {
		return;
	}

	if (kxkConvNames.test(draft.path) && draft.inDim % 9 === 0 && draft.algo !== 'ia3' && draft.algo !== 'oft' && draft.algo !== 'boft') {
		draft.kind = 'convkxk';
		draft.kernel = [3, 3];
	} else if (oneByOneConvNames.test(draft.path) || (arch === 'sd1' && sd1ProjNames.test(draft.path))) {
		draft.kind = 'conv1x1';
		draft.kernel = [1, 1];
	}
}

function parseJsonObject(text: string | undefined): Record<string, unknown> | null {
	if (typeof text !== 'string' || text.length > 1_000_000) {
		return null;
	}

	try {
		const value: unknown = JSON.parse(text);
		return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
	} catch {
		return null;
	}
}

function toNumber(value: unknown): number | undefined {
	if (typeof value === 'number') {
		return Number.isFinite(value) ? value : undefined;
	}

	if (typeof value === 'string' && value.trim() !== '' && value.length < 40) {
		const n = Number(value);
		return Number.isFinite(n) ? n : undefined;
	}

	return undefined;
}

function isTruthy(value: unknown): boolean {
	return value === true || (typeof value === 'string' && /^(?:true|1|yes)$/i.test(value.trim()));
}

type PeftConfig = {alpha?: number; r?: number; rslora: boolean; alphaPatterns: Array<[string, number]>};

function peftConfigFrom(source: Record<string, unknown>, prefix: string): PeftConfig | null {
	const get = (key: string): unknown => source[prefix ? `${prefix}.${key}` : key];
	const alpha = toNumber(get('lora_alpha'));
	const r = toNumber(get('r'));
	const patterns = get('alpha_pattern');
	const alphaPatterns: Array<[string, number]> = [];
	if (typeof patterns === 'object' && patterns !== null && !Array.isArray(patterns)) {
		for (const [pattern, value] of Object.entries(patterns).slice(0, 5000)) {
			const n = toNumber(value);
			if (n !== undefined) {
				alphaPatterns.push([pattern, n]);
			}
		}
	}

	if (alpha === undefined && r === undefined && alphaPatterns.length === 0) {
		return null;
	}

	return {alpha, r, rslora: isTruthy(get('use_rslora')), alphaPatterns};
}

/**
 * PEFT LoraConfig(s) from diffusers' `lora_adapter_metadata`: plain keys, component-prefixed keys
 * (`transformer.lora_alpha`) or nested per-component objects. Map key '' = applies to all.
 */
function parsePeftConfigs(metadata: Readonly<Record<string, string>>): Map<string, PeftConfig> {
	const configs = new Map<string, PeftConfig>();
	const root = parseJsonObject(metadata['lora_adapter_metadata']);
	if (!root) {
		return configs;
	}

	const plain = peftConfigFrom(root, '');
	if (plain) {
		configs.set('', plain);
	}

	const prefixes = new Set<string>();
	for (const key of Object.keys(root)) {
		const match = /^([A-Za-z\d_]+)\.(?:r|lora_alpha|use_rslora|alpha_pattern)$/.exec(key);
		if (match) {
			prefixes.add(match[1]!);
		}

		const nested = root[key];
		if (typeof nested === 'object' && nested !== null && !Array.isArray(nested)) {
			const config = peftConfigFrom(nested as Record<string, unknown>, '');
			if (config && key !== 'alpha_pattern' && key !== 'rank_pattern') {
				configs.set(key, config);
			}
		}
	}

	for (const prefix of prefixes) {
		const config = peftConfigFrom(root, prefix);
		if (config) {
			configs.set(prefix, config);
		}
	}

	return configs;
}

/**
 * PEFT pattern semantics: the key matches a module path when the path is the key or ends with
 * `.key`, or the key as a regex matches `(.*\.)?key$`. Regexes come from an untrusted file, so only
 * simple ones (no quantified groups, few quantifiers) are evaluated.
 */
function peftPatternMatches(pattern: string, path: string): boolean {
	if (path === pattern || path.endsWith(`.${pattern}`)) {
		return true;
	}

	if (pattern.length > 200 || /\)[*+?{]/.test(pattern) || (pattern.match(/[*+{]/g)?.length ?? 0) > 3) {
		return false;
	}

	try {
		return new RegExp(`^(?:.*\\.)?(?:${pattern})$`).test(path.slice(0, 500));
	} catch {
		return false;
	}
}

const emptyModel = (warnings: string[]): LoraModel => ({
	keyStyle: 'unknown',
	networkType: 'unknown',
	arch: 'unknown',
	archEvidence: 'no modules',
	metadataArch: null,
	modules: [],
	rank: null,
	alpha: null,
	dtype: 'none',
	unknownTensors: [],
	warnings,
});

function groupTensors(header: SafetensorsHeader, warnings: WarningSink, unknown: string[]): Map<string, Group> {
	const groups = new Map<string, Group>();
	// Writers store a module's parts next to each other: checking the last group first saves
	// hashing the module name again for most tensors.
	let last: Group | undefined;
	for (const tensor of header.tensors) {
		const parsed = parseTensorKey(tensor.name);
		if (parsed.kind === 'unknown') {
			unknown.push(tensor.name);
			continue;
		}

		if (parsed.kind === 'malformed') {
			warnings.add(`malformed key: ${parsed.reason}; not parsed`, tensor.name);
			unknown.push(tensor.name);
			continue;
		}

		let group = last?.name === parsed.module ? last : groups.get(parsed.module);
		if (!group) {
			group = {name: parsed.module, parts: new Map(), dialect: null, order: groups.size};
			groups.set(parsed.module, group);
		}

		last = group;

		if (group.parts.has(parsed.role)) {
			warnings.add(`duplicate ${parsed.role} tensor for one module; extra copy ignored`, tensor.name);
			unknown.push(tensor.name);
			continue;
		}

		group.parts.set(parsed.role, tensor.name);
		group.dialect ??= parsed.dialect;
	}

	return groups;
}

function draftOf(group: Group, header: SafetensorsHeader, warnings: WarningSink, unknown: string[]): Draft | null {
	const roles = [...group.parts.keys()];
	const entry = roleSets.find(([, set]) => roles.some(role => set.has(role)));
	const reject = (message: string): null => {
		warnings.add(message, group.name);
		unknown.push(...group.parts.values());
		return null;
	};

	if (!entry) {
		return reject(roles.includes('alpha') ? 'alpha without any factor tensors' : 'dora_scale without any factor tensors');
	}

	const [algoKey, set] = entry;
	let dims: Dims;
	try {
		dims = dimsByAlgo[algoKey]!(shapesOf(group, header));
	} catch (error) {
		if (error instanceof ShapeError) {
			return reject(`module not parsed: ${error.message}`);
		}

		throw error;
	}

	const tensors: Record<string, string> = {};
	for (const [role, key] of group.parts) {
		if (set.has(role) || commonRoles.has(role)) {
			tensors[role] = key;
		} else {
			warnings.add(`tensor of another algorithm mixed into a ${dims.algo} module; ignored`, key);
			unknown.push(key);
		}
	}

	const hasDora = 'dora_scale' in tensors;
	const needsBase = hasDora || dims.algo === 'ia3' || dims.algo === 'glora' || dims.algo === 'oft' || dims.algo === 'boft';
	// Explicit fields, not `...dims`: spreading differently-shaped objects made V8 build
	// dictionary-mode drafts and cost ~20x in this loop.
	return {
		algo: dims.algo,
		kind: dims.kind,
		kindKnown: dims.kindKnown,
		rank: dims.rank,
		unitScale: dims.unitScale,
		outDim: dims.outDim,
		inDim: dims.inDim,
		kernel: dims.kernel,
		name: group.name,
		dialect: group.dialect,
		tensors,
		hasDora,
		needsBase,
		component: 'unet',
		path: '',
		rootPrefix: '',
		order: group.order,
	};
}

function assignCloneofsimoPaths(drafts: Draft[], warnings: WarningSink): void {
	for (const component of ['unet', 'te'] as const) {
		const prefix = component === 'unet' ? 'unet:' : 'text_encoder:';
		const members = drafts.filter(d => d.dialect === 'cloneofsimo' && d.name.startsWith(prefix));
		if (members.length === 0) {
			continue;
		}

		const indexed = members.map(d => ({index: Number(d.name.slice(prefix.length)), inDim: d.inDim, outDim: d.outDim}));
		const mapping = component === 'unet' ? mapCloneofsimoUnet(indexed) : mapCloneofsimoTextEncoder(indexed);
		if (!mapping.verified) {
			warnings.add(`cloneofsimo ${component === 'unet' ? 'U-Net' : 'text encoder'} index order not verified (${mapping.note}); blocks unknown`);
		}

		for (const draft of members) {
			draft.component = component;
			draft.path = mapping.paths.get(Number(draft.name.slice(prefix.length))) ?? '';
		}
	}
}

const t5Names = /(?:^|_)encoder_block_|SelfAttention|DenseReluDense|EncDecAttention/;

function remapTextEncoders(drafts: Draft[], arch: Arch): void {
	for (const draft of drafts) {
		if (draft.component === 'te' && draft.rootPrefix === 'text_encoder' && (arch === 'sdxl' || arch === 'sd3' || arch === 'flux')) {
			// diffusers calls the first encoder `text_encoder`; in multi-encoder models it is CLIP-L = te1.
			draft.component = 'te1';
		} else if (draft.component === 'te2' && arch === 'flux' && t5Names.test(draft.path)) {
			// Flux's second encoder is T5, which kohya names te3 (diffusers text_encoder_2, OneTrainer lora_te2).
			draft.component = 'te3';
		}
	}
}

/** kohya Flux split_qkv: down stacks 3 (qkv) or 4 (linear1) matrices; header-only evidence, see README of buildLoraModel. */
function applySplitQkv(drafts: Draft[], metadata: Readonly<Record<string, string>>, networkArgs: Record<string, unknown> | null): void {
	const stackOf = (draft: Draft): number => {
		if (draft.algo !== 'lora' || draft.dialect !== 'kohya' || draft.component !== 'unet') {
			return 0;
		}

		if (/(?:^|_)double_blocks_\d+_(?:img|txt)_attn_qkv$/.test(draft.path)) {
			return 3;
		}

		return /(?:^|_)single_blocks_\d+_linear1$/.test(draft.path) ? 4 : 0;
	};

	const candidates = drafts.filter(d => stackOf(d) > 0);
	if (candidates.length === 0) {
		return;
	}

	const declared = isTruthy(networkArgs?.['split_qkv']);
	const dim = toNumber(metadata['ss_network_dim']);
	let dimMatches = false;
	if (!declared && dim !== undefined && Number.isInteger(dim) && dim > 0) {
		// Without the flag: qkv modules have exactly 3·dim (4·dim) rows while most other modules have dim.
		const others = drafts.filter(d => stackOf(d) === 0 && d.rank !== null && d.component === 'unet');
		const plain = others.filter(d => d.rank === dim).length;
		dimMatches = others.length > 0 && plain * 2 > others.length && candidates.every(d => d.rank === stackOf(d) * dim);
	}

	if (!declared && !dimMatches) {
		return;
	}

	for (const draft of candidates) {
		const n = stackOf(draft);
		if (draft.rank !== null && draft.rank % n === 0) {
			draft.splitQkv = n;
			draft.rank /= n;
		}
	}
}

type AlphaResult = {alpha: number | null; alphaSource: AlphaSource; scale: number};

function resolveAlpha(
	draft: Draft,
	alphaValues: AlphaValues | undefined,
	metadata: Readonly<Record<string, string>>,
	networkArgs: Record<string, unknown> | null,
	peft: Map<string, PeftConfig>,
): AlphaResult {
	const rank = draft.rank;
	const scaleFor = (alpha: number | null, rslora = false): number => {
		if (alpha === null || rank === null || draft.unitScale) {
			return 1;
		}

		return rslora ? alpha / Math.sqrt(rank) : alpha / rank;
	};

	const alphaKey = draft.tensors['alpha'];
	if (alphaKey !== undefined) {
		const value = alphaValues?.get(alphaKey);
		if (value === undefined || !Number.isFinite(value)) {
			// Header-only build: the value lives in tensor data (loadLoraModel reads it).
			return {alpha: null, alphaSource: 'tensor', scale: 1};
		}

		// kohya maps alpha 0 to the rank (networks/lora.py); OFT's alpha is a constraint, kept as is.
		const alpha = value === 0 && rank !== null ? rank : value;
		return {alpha, alphaSource: 'tensor', scale: scaleFor(alpha)};
	}

	if (rank === null) {
		return {alpha: null, alphaSource: 'none', scale: 1};
	}

	// kohya's metadata alphas only describe kohya-named modules; conv_alpha covers the k×k convs (1×1 use network_alpha).
	const kohyaNamed = draft.dialect === 'kohya' || draft.dialect === 'lycoris';
	const convAlpha = kohyaNamed && draft.kind === 'convkxk' ? networkArgs?.['conv_alpha'] : undefined;
	if (convAlpha !== undefined) {
		const n = toNumber(convAlpha);
		const alpha = n === undefined || n === 0 ? rank : n;
		return {alpha, alphaSource: 'conv-metadata', scale: scaleFor(alpha)};
	}

	const networkAlpha = metadata['ss_network_alpha'];
	if (networkAlpha !== undefined && kohyaNamed) {
		const n = toNumber(networkAlpha);
		const alpha = n === undefined || n === 0 ? rank : n;
		return {alpha, alphaSource: 'metadata', scale: scaleFor(alpha)};
	}

	if (peft.size > 0) {
		let rest = draft.name.startsWith('base_model.model.') ? draft.name.slice('base_model.model.'.length) : draft.name;
		if (draft.rootPrefix && rest.startsWith(`${draft.rootPrefix}.`)) {
			rest = rest.slice(draft.rootPrefix.length + 1);
		}

		const config = peft.get(draft.rootPrefix) ?? peft.get('');
		if (config) {
			const patterned = config.alphaPatterns.find(([pattern]) => peftPatternMatches(pattern, rest));
			const alpha = patterned?.[1] ?? config.alpha;
			if (alpha !== undefined) {
				return {alpha, alphaSource: 'peft', scale: scaleFor(alpha, config.rslora)};
			}
		}
	}

	return {alpha: rank, alphaSource: 'default', scale: 1};
}

const lycorisOnlyAlgos = new Set<ModuleAlgo>(['locon-tucker', 'loha', 'lokr', 'ia3', 'glora', 'boft', 'full', 'norm']);

function keyStyleOf(drafts: Draft[], metadata: Readonly<Record<string, string>>): KeyStyle {
	const kohyaNamed = drafts.filter(d => d.dialect === 'kohya' && !d.name.includes('.'));
	const lycoris = (metadata['ss_network_module'] ?? '').startsWith('lycoris')
		|| kohyaNamed.some(d => lycorisOnlyAlgos.has(d.algo) || d.hasDora || ((d.algo === 'oft') && d.name.startsWith('lora_')));
	const styles = new Set<KeyStyle>();
	for (const draft of drafts) {
		if (draft.dialect === null) {
			continue;
		}

		styles.add(draft.dialect === 'kohya' && lycoris ? 'lycoris' : draft.dialect);
	}

	if (styles.size === 0) {
		return 'unknown';
	}

	return styles.size === 1 ? [...styles][0]! : 'mixed';
}

function networkTypeOf(modules: LoraModule[]): NetworkType {
	if (modules.length === 0) {
		return 'unknown';
	}

	if (modules.some(m => m.hasDora)) {
		return 'DoRA';
	}

	const types = new Set<NetworkType>();
	for (const module of modules) {
		switch (module.algo) {
			case 'lora':
			case 'locon-tucker': {
				types.add('LoRA');
				break;
			}

			case 'loha': {
				types.add('LoHa');
				break;
			}

			case 'lokr': {
				types.add('LoKr');
				break;
			}

			case 'ia3': {
				types.add('IA3');
				break;
			}

			case 'glora': {
				types.add('GLoRA');
				break;
			}

			case 'oft': {
				types.add('OFT');
				break;
			}

			case 'boft': {
				types.add('BOFT');
				break;
			}

			case 'full': {
				types.add('Full');
				break;
			}

			case 'norm': {
				types.add('Norm');
				break;
			}
		}
	}

	// LyCORIS trains norm layers alongside the main algorithm: they do not make a file "mixed".
	if (types.size > 1) {
		types.delete('Norm');
	}

	if (types.size > 1) {
		return 'mixed';
	}

	const only = [...types][0]!;
	if (only === 'LoRA' && modules.some(m => m.kind === 'convkxk' || m.algo === 'locon-tucker')) {
		return 'LoCon';
	}

	return only;
}

function dominantDtype(header: SafetensorsHeader): string {
	const bytes = new Map<string, number>();
	for (const tensor of header.tensors) {
		bytes.set(tensor.dtype, (bytes.get(tensor.dtype) ?? 0) + (tensor.end - tensor.begin) + 1);
	}

	let best = 'none';
	let bestBytes = -1;
	for (const [dtype, count] of bytes) {
		if (count > bestBytes) {
			best = dtype;
			bestBytes = count;
		}
	}

	return best;
}

/**
 * Build the LoRA model of a file from its header. Pure and header-only: tensor data is never
 * read. `alpha` tensors hold their value in tensor data, so without `alphaValues` modules that
 * have one report `alphaSource: 'tensor'`, `alpha: null`, `scale: 1`; pass the values (see
 * loadLoraModel) for exact scales.
 *
 * kohya Flux split_qkv cannot be seen in shapes (a stacked 3r×in down looks like a rank-3r one),
 * so it is applied when `ss_network_args` says `split_qkv`, or when `ss_network_dim` = r and the
 * qkv/linear1 modules have exactly 3r/4r rows while most other modules have r.
 */
export function buildLoraModel(header: SafetensorsHeader, alphaValues?: AlphaValues): LoraModel {
	const metadata = modelInputsOf(header.metadata ?? {});
	// Epochs of one run share their tensor table (structure-cache.ts) and, nearly always, the few
	// metadata values read here and their alpha values: one model then serves them all.
	const shared = isSharedTable(header.tensors);
	const key = shared ? JSON.stringify([modelMetadataKeys.map(k => metadata[k] ?? null), alphaValues ? [...alphaValues] : null]) : '';
	let models = shared ? sharedModels.get(header.tensors) : undefined;
	const known = models?.get(key);
	if (known) {
		return known;
	}

	const model = buildModel(header, metadata, alphaValues);
	if (shared) {
		if (!models) {
			models = new Map();
			sharedModels.set(header.tensors, models);
		}

		if (models.size < 16) {
			models.set(key, freezeModel(model));
		}
	}

	return model;
}

/**
 * Every metadata key the model reads. buildModel sees only these, so a model shared between files
 * whose values of them agree is the model each would get alone.
 */
const modelMetadataKeys = ['ss_network_args', 'ss_network_dim', 'ss_network_alpha', 'ss_network_module', 'ss_base_model_version', 'modelspec.architecture', 'ss_v2', 'lora_adapter_metadata'] as const;

function modelInputsOf(metadata: Readonly<Record<string, string>>): Readonly<Record<string, string>> {
	const inputs = Object.create(null) as Record<string, string>;
	for (const key of modelMetadataKeys) {
		const value = metadata[key];
		if (typeof value === 'string') {
			inputs[key] = value;
		}
	}

	return inputs;
}

const sharedModels = new WeakMap<readonly TensorInfo[], Map<string, LoraModel>>();

/** A shared model must not change under the files that hold it. */
function freezeModel(model: LoraModel): LoraModel {
	for (const module of model.modules) {
		Object.freeze(module.tensors);
		if (module.kernel) {
			Object.freeze(module.kernel);
		}

		Object.freeze(module);
	}

	Object.freeze(model.modules);
	Object.freeze(model.unknownTensors);
	Object.freeze(model.warnings);
	return Object.freeze(model);
}

function buildModel(header: SafetensorsHeader, metadata: Readonly<Record<string, string>>, alphaValues: AlphaValues | undefined): LoraModel {
	const warnings = new WarningSink();
	const unknown: string[] = [];
	try {
		const networkArgs = parseJsonObject(metadata['ss_network_args']);
		const groups = groupTensors(header, warnings, unknown);
		const drafts: Draft[] = [];
		for (const group of groups.values()) {
			const draft = draftOf(group, header, warnings, unknown);
			if (draft) {
				if (draft.dialect !== 'cloneofsimo') {
					const located = modulePathOf(draft.name, draft.dialect);
					draft.component = located.component;
					draft.path = located.path;
					draft.rootPrefix = located.rootPrefix;
				}

				drafts.push(draft);
			}
		}

		assignCloneofsimoPaths(drafts, warnings);
		const probes: ArchProbe[] = drafts.map(d => ({path: d.path, component: d.component, inDim: d.inDim, outDim: d.outDim}));
		const fromWeights = detectArchFromWeights(probes);
		const claimed = metadataArchOf(metadata);
		let {arch, evidence} = fromWeights;
		if (arch === 'unknown' && claimed && claimed.arch !== 'unknown') {
			arch = claimed.arch;
			evidence = `metadata only (${claimed.key})`;
		} else if (arch !== 'unknown' && claimed && claimed.arch !== 'unknown' && claimed.arch !== arch) {
			warnings.add(`metadata ${claimed.key} says ${formatArch(claimed.arch)} but the weights look like ${formatArch(arch)} (${evidence})`);
		}

		remapTextEncoders(drafts, arch);
		applySplitQkv(drafts, metadata, networkArgs);
		const peft = parsePeftConfigs(metadata);
		const modules: LoraModule[] = [];
		for (const draft of drafts) {
			refineKindByName(draft, arch);
			const block = draft.dialect === 'cloneofsimo' && draft.component === 'unet' && draft.path === '' ? '?' : blockOf(draft.path, draft.component, arch);
			const alpha = resolveAlpha(draft, alphaValues, metadata, networkArgs, peft);
			const module: LoraModule = {
				name: draft.name,
				component: draft.component,
				algo: draft.algo,
				kind: draft.kind,
				rank: draft.rank,
				alpha: alpha.alpha,
				alphaSource: alpha.alphaSource,
				scale: alpha.scale,
				outDim: draft.outDim,
				inDim: draft.inDim,
				kernel: draft.kernel,
				block,
				blockOrder: blockOrderOf(block),
				tensors: draft.tensors,
				hasDora: draft.hasDora,
				needsBase: draft.needsBase,
			};
			if (draft.splitQkv !== undefined) {
				module.splitQkv = draft.splitQkv;
			}

			modules.push(module);
		}

		// Block order, then file order (kohya and diffusers save in module registration order,
		// which is architectural order within a block). Indices are sorted, not the modules, so
		// the comparator reads two arrays instead of a map lookup per comparison.
		const byPosition = Array.from(modules, (_, i) => i).sort((a, b) => modules[a]!.blockOrder - modules[b]!.blockOrder || drafts[a]!.order - drafts[b]!.order);
		const unsorted = [...modules];
		for (const [position, index] of byPosition.entries()) {
			modules[position] = unsorted[index]!;
		}

		if (header.tensors.length === 0) {
			warnings.add('file has no tensors');
		} else if (modules.length === 0) {
			warnings.add('no LoRA modules recognised');
		}

		const factorModules = modules.filter(m => m.rank !== null);
		return {
			keyStyle: keyStyleOf(drafts, metadata),
			networkType: networkTypeOf(modules),
			arch,
			archEvidence: evidence,
			metadataArch: claimed?.arch ?? null,
			modules,
			rank: mostCommon(factorModules.map(m => m.rank!)) ?? null,
			alpha: mostCommon(factorModules.filter(m => m.alpha !== null).map(m => m.alpha!)) ?? null,
			dtype: dominantDtype(header),
			unknownTensors: unknown,
			warnings: warnings.lines(),
		};
	} catch (error) {
		// A bug here must not take the file list down: report it like any other problem.
		const reason = error instanceof Error ? error.message.split('\n')[0]! : String(error);
		return emptyModel([...warnings.lines(), `internal error while modelling the file: ${quoteKey(reason, 200)}`]);
	}
}

/** Keys of the scalar `alpha` tensors whose values buildLoraModel needs for exact scales. */
export function alphaTensorKeys(header: SafetensorsHeader): readonly string[] {
	const known = sharedAlphaKeys.get(header.tensors);
	if (known) {
		return known;
	}

	const keys: string[] = [];
	for (const tensor of header.tensors) {
		const parsed = parseTensorKey(tensor.name);
		if (parsed.kind === 'part' && parsed.role === 'alpha' && product(tensor.shape) === 1) {
			keys.push(tensor.name);
		}
	}

	if (isSharedTable(header.tensors)) {
		sharedAlphaKeys.set(header.tensors, Object.freeze(keys));
	}

	return keys;
}

const sharedAlphaKeys = new WeakMap<readonly TensorInfo[], readonly string[]>();

/** What loadLoraModel reads alpha tensors with: one at a time, or several raw at once (TensorReader). */
export type AlphaReader =
	| ((name: string) => Promise<Float32Array>)
	| {readMany: (names: readonly string[]) => Promise<ReadonlyMap<string, Uint8Array>>};

/**
 * buildLoraModel with the alpha values read through `read` (a TensorReader reads nearby alphas
 * together): a few hundred scalar values at most. Read errors propagate (the file is damaged).
 */
export async function loadLoraModel(header: SafetensorsHeader, read: AlphaReader): Promise<LoraModel> {
	const keys = alphaTensorKeys(header);
	const values = new Map<string, number>();
	if (typeof read === 'function') {
		for (const key of keys) {
			const value = (await read(key))[0];
			if (value !== undefined) {
				values.set(key, value);
			}
		}
	} else {
		for (const [key, bytes] of await read.readMany(keys)) {
			const value = decodeToFloat32(bytes, header.byName.get(key)!.dtype)[0];
			if (value !== undefined) {
				values.set(key, value);
			}
		}
	}

	return buildLoraModel(header, values);
}

const keyStyleNames: Record<KeyStyle, string> = {
	kohya: 'kohya',
	lycoris: 'LyCORIS (kohya names)',
	'diffusers-attnproc': 'diffusers (attention processors)',
	diffusers: 'diffusers',
	peft: 'PEFT',
	cloneofsimo: 'cloneofsimo',
	mixed: 'mixed',
	unknown: 'unknown',
};

/** Display name of a key style. */
export function formatKeyStyle(style: KeyStyle): string {
	return keyStyleNames[style] ?? 'unknown';
}

export {formatArch} from './arch.js';
export {blockNamesFor, blockOrderOf} from './blocks.js';
