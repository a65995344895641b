// Tensor-key dialects of LoRA files: which module a key belongs to, what part of it the
// tensor is (down/up/alpha/hada_w1_a/...), and the normalised module path used for block
// and architecture detection. Pure string work on header keys; never reads tensor data.
import type {Component} from './types.js';

/** The naming dialect a single key was recognised in (the file-level KeyStyle is derived from these). */
export type KeyDialect = 'kohya' | 'lycoris' | 'diffusers-attnproc' | 'diffusers' | 'peft' | 'cloneofsimo';

export type ParsedKey =
	| {kind: 'part'; module: string; role: string; dialect: KeyDialect | null}
	| {kind: 'malformed'; reason: string}
	| {kind: 'unknown'};

/** Parts of kohya-named modules: everything after the first '.' of the key. */
const kohyaSuffixes: ReadonlyMap<string, string> = new Map([
	['lora_down.weight', 'down'],
	['lora_up.weight', 'up'],
	['lora_mid.weight', 'mid'],
	['lora_A.weight', 'down'],
	['lora_B.weight', 'up'],
	['alpha', 'alpha'],
	['dora_scale', 'dora_scale'],
	['hada_w1_a', 'hada_w1_a'],
	['hada_w1_b', 'hada_w1_b'],
	['hada_w2_a', 'hada_w2_a'],
	['hada_w2_b', 'hada_w2_b'],
	['hada_t1', 'hada_t1'],
	['hada_t2', 'hada_t2'],
	['lokr_w1', 'lokr_w1'],
	['lokr_w1_a', 'lokr_w1_a'],
	['lokr_w1_b', 'lokr_w1_b'],
	['lokr_w2', 'lokr_w2'],
	['lokr_w2_a', 'lokr_w2_a'],
	['lokr_w2_b', 'lokr_w2_b'],
	['lokr_t2', 'lokr_t2'],
	['diff', 'diff'],
	['diff_b', 'diff_b'],
	// LyCORIS IA3 stores its vector as `<name>.weight` plus an `on_input` flag tensor.
	['weight', 'weight'],
	['on_input', 'on_input'],
	['a1.weight', 'a1'],
	['a2.weight', 'a2'],
	['b1.weight', 'b1'],
	['b2.weight', 'b2'],
	['bm.weight', 'bm'],
	['oft_blocks', 'oft_blocks'],
	['rescale', 'rescale'],
	['w_norm', 'w_norm'],
	['b_norm', 'b_norm'],
]);

/**
 * LyCORIS parts that may also follow a dotted module path (PEFT LoHa/LoKr, ComfyUI full diffs,
 * kohya files converted by diffusers with `.alpha`). `weight`/`a1.weight` are excluded: after a
 * dotted path they are indistinguishable from plain model weights.
 */
const dottedLycorisSuffixes = new Set([
	'alpha',
	'dora_scale',
	'hada_w1_a',
	'hada_w1_b',
	'hada_w2_a',
	'hada_w2_b',
	'hada_t1',
	'hada_t2',
	'lokr_w1',
	'lokr_w1_a',
	'lokr_w1_b',
	'lokr_w2',
	'lokr_w2_a',
	'lokr_w2_b',
	'lokr_t2',
	'diff',
	'diff_b',
	'oft_blocks',
	'rescale',
	'w_norm',
	'b_norm',
]);

/** Roles that say nothing about the dialect on their own (their module's other parts decide). */
const neutralRoles = new Set(['alpha', 'dora_scale']);

const kohyaBase = /^(?:lora|lycoris|oft)_[\w]+$/;
// A part name glued to the module name with '_' instead of '.', e.g. `..._to_k_lora_down.weight`.
const gluedPart = /_(?:lora_(?:down|up|mid|A|B)|hada_w[12]_[ab]|hada_t[12]|lokr_w[12](?:_[ab])?|lokr_t2|dora_scale|alpha)(?:\.weight)?$/;
const cloneofsimoKey = /^(unet|text_encoder):(\d{1,6}):(up|down)$/;
const attnProcKey = /^((?:.*\.)?\w+?_lora\d?)\.(down|up)\.weight$/;
const linearLayerKey = /^(.+)\.lora_linear_layer\.(down|up)\.weight$/;
const diffusersLoraKey = /^(.+)\.lora\.(down|up)\.weight$/;
const peftKey = /^(.+)\.lora_([AB])(?:\.([A-Za-z\d_-]+))?\.(weight|bias)$/;
const peftMagnitudeKey = /^(.+)\.lora_magnitude_vector(?:\.[A-Za-z\d_-]+)?(?:\.weight)?$/;
const dottedKohyaKey = /^(.+)\.(lora_down|lora_up|lora_mid)\.weight$/;

const maxKeyLength = 1024;

/** Classify one tensor key. Never throws. */
export function parseTensorKey(key: string): ParsedKey {
	// Real keys are < 300 characters; a hostile multi-megabyte name must not reach the regexes.
	if (key.length > maxKeyLength) {
		return {kind: 'malformed', reason: `tensor name longer than ${maxKeyLength} characters`};
	}

	const clone = cloneofsimoKey.exec(key);
	if (clone) {
		return {kind: 'part', module: `${clone[1]!}:${Number(clone[2])}`, role: clone[3]!, dialect: 'cloneofsimo'};
	}

	const dot = key.indexOf('.');
	const base = dot === -1 ? key : key.slice(0, dot);
	if (kohyaBase.test(base)) {
		if (dot === -1) {
			return gluedPart.test(key)
				? {kind: 'malformed', reason: "part name joined to the module name with '_' instead of '.'"}
				: {kind: 'unknown'};
		}

		const suffix = key.slice(dot + 1);
		const role = kohyaSuffixes.get(suffix);
		if (role === 'weight' && gluedPart.test(base)) {
			return {kind: 'malformed', reason: "part name joined to the module name with '_' instead of '.'"};
		}

		if (role !== undefined) {
			return {kind: 'part', module: base, role, dialect: neutralRoles.has(role) ? null : 'kohya'};
		}

		return {kind: 'unknown'};
	}

	let match = attnProcKey.exec(key);
	if (match) {
		return {kind: 'part', module: match[1]!, role: match[2]!, dialect: 'diffusers-attnproc'};
	}

	match = linearLayerKey.exec(key) ?? diffusersLoraKey.exec(key);
	if (match) {
		return {kind: 'part', module: match[1]!, role: match[2]!, dialect: 'diffusers'};
	}

	match = peftKey.exec(key);
	if (match && match[3] !== 'weight' && match[3] !== 'bias') {
		const isA = match[2] === 'A';
		const role = match[4] === 'bias' ? (isA ? 'down_bias' : 'up_bias') : isA ? 'down' : 'up';
		return {kind: 'part', module: match[1]!, role, dialect: 'peft'};
	}

	match = peftMagnitudeKey.exec(key);
	if (match) {
		return {kind: 'part', module: match[1]!, role: 'dora_scale', dialect: 'peft'};
	}

	match = dottedKohyaKey.exec(key);
	if (match) {
		const role = match[2] === 'lora_down' ? 'down' : match[2] === 'lora_up' ? 'up' : 'mid';
		return {kind: 'part', module: match[1]!, role, dialect: 'kohya'};
	}

	const lastDot = key.lastIndexOf('.');
	if (lastDot > 0) {
		const suffix = key.slice(lastDot + 1);
		const module = key.slice(0, lastDot);
		if (dottedLycorisSuffixes.has(suffix)) {
			const dialect: KeyDialect = module.startsWith('base_model.model.') ? 'peft' : 'lycoris';
			return {kind: 'part', module, role: suffix, dialect: neutralRoles.has(suffix) ? null : dialect};
		}
	}

	if (gluedPart.test(key) || /_lora_(?:down|up)\.weight$/.test(key)) {
		return {kind: 'malformed', reason: "part name joined to the module name with '_' instead of '.'"};
	}

	return {kind: 'unknown'};
}

export type ModulePath = {
	component: Component;
	/** Module path below the component root with every '.' turned into '_' (kohya spelling), e.g. `down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k`. */
	path: string;
	/** First dotted segment that named the component in diffusers/PEFT files (`transformer`, `text_encoder_2`), '' otherwise. */
	rootPrefix: string;
};

const kohyaPrefixes: ReadonlyArray<[RegExp, Component]> = [
	[/^lora_unet_/, 'unet'],
	[/^lora_prior_unet_/, 'unet'],
	[/^lora_transformer_/, 'unet'],
	[/^lora_te_/, 'te'],
	[/^lora_te1_/, 'te1'],
	[/^lora_te2_/, 'te2'],
	[/^lora_te3_/, 'te3'],
	[/^oft_unet_/, 'unet'],
	[/^oft_te_/, 'te'],
	[/^oft_te([123])_/, 'te1'],
	[/^lycoris_/, 'unet'],
	[/^lora_/, 'unet'],
];

const dottedRoots: ReadonlyMap<string, Component> = new Map([
	['unet', 'unet'],
	['transformer', 'unet'],
	['diffusion_model', 'unet'],
	['model', 'unet'],
	['text_encoder', 'te'],
	['text_encoder_2', 'te2'],
	['text_encoder_3', 'te3'],
]);

/** Diffusers attention-processor part names → the Linear they wrap. */
function normaliseAttnProc(path: string, component: Component): string {
	if (component === 'unet') {
		return path
			.replace(/_processor_to_out_lora$/, '_to_out_0')
			.replace(/_processor_(to_[qkv])_lora$/, '_$1')
			.replace(/_processor_(\w+?)_lora\d?$/, '_$1')
			.replace(/_to_out_lora$/, '_to_out_0')
			.replace(/_(to_[qkv])_lora$/, '_$1');
	}

	return path
		.replace(/_to_out_lora$/, '_out_proj')
		.replace(/_to_([qkv])_lora$/, '_$1_proj')
		.replace(/_(\w+?)_lora\d?$/, '_$1');
}

/** Component and normalised path of a module name (as grouped by parseTensorKey). */
export function modulePathOf(module: string, dialect: KeyDialect | null): ModulePath {
	if (!module.includes('.') && /^(?:lora|lycoris|oft)_/.test(module)) {
		for (const [pattern, component] of kohyaPrefixes) {
			const match = pattern.exec(module);
			if (match) {
				const teIndex = /^oft_te([123])_/.exec(module)?.[1];
				const resolved = teIndex ? (`te${teIndex}` as Component) : component;
				return {component: resolved, path: module.slice(match[0].length), rootPrefix: ''};
			}
		}
	}

	let rest = module;
	if (rest.startsWith('base_model.model.')) {
		rest = rest.slice('base_model.model.'.length);
	}

	let component: Component | undefined;
	let rootPrefix = '';
	const first = rest.split('.', 1)[0] ?? '';
	const root = dottedRoots.get(first);
	if (root !== undefined && rest.length > first.length) {
		component = root;
		rootPrefix = first;
		rest = rest.slice(first.length + 1);
		// `model.diffusion_model.` (full-checkpoint style) → strip both.
		if (first === 'model' && rest.startsWith('diffusion_model.')) {
			rest = rest.slice('diffusion_model.'.length);
		}
	}

	component ??= /^(?:text_model|encoder\.layers|encoder\.block)[._]/.test(rest) ? 'te' : 'unet';
	let path = rest.replaceAll('.', '_');
	if (dialect === 'diffusers-attnproc') {
		path = normaliseAttnProc(path, component);
	}

	return {component, path, rootPrefix};
}

// cloneofsimo/lora stores modules by traversal index only (lora-formats.md §5). The U-Net order
// is: 6 down_blocks transformers, 9 up_blocks transformers, then the mid block; each transformer
// contributes attn1 q,k,v,out, [GEGLU ff.net.0.proj,] attn2 q,k,v,out.
const cloneofsimoTransformers: ReadonlyArray<[string, number]> = [
	['down_blocks_0_attentions_0', 320],
	['down_blocks_0_attentions_1', 320],
	['down_blocks_1_attentions_0', 640],
	['down_blocks_1_attentions_1', 640],
	['down_blocks_2_attentions_0', 1280],
	['down_blocks_2_attentions_1', 1280],
	['up_blocks_1_attentions_0', 1280],
	['up_blocks_1_attentions_1', 1280],
	['up_blocks_1_attentions_2', 1280],
	['up_blocks_2_attentions_0', 640],
	['up_blocks_2_attentions_1', 640],
	['up_blocks_2_attentions_2', 640],
	['up_blocks_3_attentions_0', 320],
	['up_blocks_3_attentions_1', 320],
	['up_blocks_3_attentions_2', 320],
	['mid_block_attentions_0', 1280],
];

type Slot = {part: string; in: 'ch' | 'ctx'; out: 'ch' | 'ff'};
const attn1Slots: Slot[] = ['to_q', 'to_k', 'to_v', 'to_out_0'].map(p => ({part: `attn1_${p}`, in: 'ch', out: 'ch'}));
const attn2Slots: Slot[] = [
	{part: 'attn2_to_q', in: 'ch', out: 'ch'},
	{part: 'attn2_to_k', in: 'ctx', out: 'ch'},
	{part: 'attn2_to_v', in: 'ctx', out: 'ch'},
	{part: 'attn2_to_out_0', in: 'ch', out: 'ch'},
];
const gegluSlot: Slot = {part: 'ff_net_0_proj', in: 'ch', out: 'ff'};

export type IndexedModule = {index: number; inDim: number; outDim: number};

export type CloneofsimoMapping = {paths: Map<number, string>; verified: boolean; note: string};

/**
 * Map cloneofsimo U-Net indices to diffusers paths by traversal order, accepted only when every
 * module's (in, out) matches the SD1/SD2 U-Net widths at its slot. Otherwise no paths.
 */
export function mapCloneofsimoUnet(modules: IndexedModule[]): CloneofsimoMapping {
	const paths = new Map<number, string>();
	const count = modules.length;
	const perBlock = count / cloneofsimoTransformers.length;
	if (perBlock !== 9 && perBlock !== 8) {
		return {paths, verified: false, note: `${count} U-Net modules is not 16 transformer blocks of 8 or 9`};
	}

	const slots = perBlock === 9 ? [...attn1Slots, gegluSlot, ...attn2Slots] : [...attn1Slots, ...attn2Slots];
	const byIndex = new Map(modules.map(m => [m.index, m]));
	let contextDim: number | undefined;
	for (let index = 0; index < count; index++) {
		const module = byIndex.get(index);
		const [block, channels] = cloneofsimoTransformers[Math.floor(index / perBlock)]!;
		const slot = slots[index % perBlock]!;
		if (!module) {
			return {paths: new Map(), verified: false, note: `index ${index} is missing`};
		}

		const expectedOut = slot.out === 'ff' ? channels * 8 : channels;
		let expectedIn = channels;
		if (slot.in === 'ctx') {
			contextDim ??= module.inDim;
			expectedIn = contextDim;
		}

		if (module.inDim !== expectedIn || module.outDim !== expectedOut) {
			return {paths: new Map(), verified: false, note: `index ${index} has shape ${module.outDim}×${module.inDim}, expected ${expectedOut}×${expectedIn} for ${block}_transformer_blocks_0_${slot.part}`};
		}

		paths.set(index, `${block}_transformer_blocks_0_${slot.part}`);
	}

	return {paths, verified: true, note: `${perBlock} modules per transformer block`};
}

/** cloneofsimo text-encoder indices: groups of 4 in CLIPAttention registration order (k, v, q, out); square, so not shape-verifiable. */
export function mapCloneofsimoTextEncoder(modules: IndexedModule[]): CloneofsimoMapping {
	const paths = new Map<number, string>();
	const parts = ['k_proj', 'v_proj', 'q_proj', 'out_proj'];
	for (const module of modules) {
		paths.set(module.index, `text_model_encoder_layers_${Math.floor(module.index / 4)}_self_attn_${parts[module.index % 4]!}`);
	}

	return {paths, verified: modules.length % 4 === 0, note: 'order within a layer assumed k, v, q, out'};
}

/** Make untrusted text (tensor names) safe to put in a one-line warning. */
export function quoteKey(text: string, max = 100): string {
	let out = '';
	for (const char of text) {
		const code = char.codePointAt(0)!;
		const unsafe = code < 0x20 || (code >= 0x7f && code < 0xa0) || (code >= 0x20_2a && code <= 0x20_2e) || (code >= 0x20_66 && code <= 0x20_69) || code === 0x20_28 || code === 0x20_29;
		out += unsafe ? `\\u{${code.toString(16)}}` : char;
		if (out.length >= max) {
			return `${out.slice(0, max)}…`;
		}
	}

	return out;
}
