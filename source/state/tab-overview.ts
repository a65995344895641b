// Overview tab: identity of the file, the training facts grouped the way users think (from H2's
// training-fields table: plain labels, one-line definitions), and the findings with their reasons.
// Every field line carries its definition as the line's hint (shown for the cursor's line, or inline
// for all with `i`).
import {findTrainingIssues} from '../lora/findings.js';
import {formatArch, formatKeyStyle} from '../lora/model.js';
import {presentTrainingGroups} from '../lora/training-fields.js';
import type {LoraStats} from '../lora/types.js';
import {trainingOf} from './entry-shape.js';
import {formatBytes, formatDateTime, formatNumber} from './format.js';
import {glyphs} from './glyphs.js';
import {blank, line, seg, type Line, type Role} from './lines.js';
import {clean, fit, wrap} from './text.js';
import type {FileRow, TerminalEnv} from './types.js';

export type OverviewOptions = {explain: boolean; width: number; env: TerminalEnv};

const labelWidth = 22;

type Field = {key: string; label: string; value: string; definition: string; role?: Role};

function fieldLines(fields: Field[], options: OverviewOptions): Line[] {
	const {env, width, explain} = options;
	const valueWidth = Math.max(10, width - labelWidth - 1);
	const lines: Line[] = [];
	for (const f of fields) {
		const value = clean(f.value, env, valueWidth);
		lines.push(line([seg(fit(f.label, labelWidth, env), 'label'), seg(' '), seg(value, f.role ?? 'value')], `field:${f.key}`, f.definition));
		if (explain) {
			for (const text of wrap(clean(f.definition, env, 400), valueWidth, 3)) {
				lines.push(line([seg(' '.repeat(labelWidth + 1)), seg(text, 'dim')]));
			}
		}
	}

	return lines;
}

function identityFields(row: FileRow): Field[] {
	const entry = row.entry;
	const model = entry?.model;
	const metadata = entry?.header?.metadata ?? {};
	const training = trainingOf(entry);
	const fields: Field[] = [];
	const title = training?.modelspec.title ?? null;
	if (title) {
		fields.push({key: 'title', label: 'Title', value: title, definition: 'modelspec.title: the name the author gave the LoRA.'});
	}

	if (training?.outputName) {
		fields.push({key: 'output_name', label: 'Output name', value: training.outputName, definition: 'ss_output_name: the name the trainer saved the run under (epochs share it).'});
	}

	fields.push(
		{key: 'file', label: 'File', value: `${row.name}${row.folder === '.' ? '' : `  (${row.folder})`}`, definition: 'File name and its folder relative to the opened folder.'},
		{
			key: 'size',
			label: 'Size',
			value: `${formatBytes(row.sizeBytes)} (${row.sizeBytes} bytes), modified ${formatDateTime(row.mtimeMs)}`,
			definition: 'Size on disk and last modification time.',
		},
	);
	if (model) {
		const disagree = model.metadataArch !== null && model.metadataArch !== model.arch && model.arch !== 'unknown';
		fields.push({
			key: 'arch',
			label: 'Architecture',
			value: `${formatArch(model.arch)} (${model.archEvidence})${disagree ? `; metadata says ${formatArch(model.metadataArch!)}` : ''}`,
			definition: 'Base architecture detected from tensor names and shapes (not from metadata, which can be wrong).',
			role: disagree ? 'warn' : undefined,
		});
		fields.push({
			key: 'network',
			label: 'Network type',
			value: `${model.networkType}, ${formatKeyStyle(model.keyStyle)} keys${metadata['ss_network_module'] ? `, ${metadata['ss_network_module']}` : ''}`,
			definition: 'Kind of adapter (LoRA, LoCon, LoHa, LoKr, …), the naming scheme of its keys and the trainer module.',
		});
		const scale = model.rank !== null && model.alpha !== null && model.rank > 0 ? model.alpha / model.rank : null;
		// The list reads headers only; the selected file's alpha tensors arrive a moment later.
		const pending = model.alpha === null && entry?.alphasLoaded === false;
		const metadataAlpha = training?.derived.metadataAlpha ?? null;
		const alphaText = model.alpha === null ? (pending ? `${metadataAlpha === null ? '?' : formatNumber(metadataAlpha)} (metadata; reading the alpha tensors)` : '-') : formatNumber(model.alpha);
		fields.push({
			key: 'rank_alpha',
			label: 'Rank / alpha',
			value: `${model.rank ?? '-'} / ${alphaText}${scale === null ? '' : `  (scale alpha/rank = ${formatNumber(scale)})`}`,
			definition: 'Rank: inner size of each update (capacity). Alpha: its scaling; the update is multiplied by alpha/rank.',
		});
		fields.push({key: 'dtype', label: 'Weights dtype', value: model.dtype, definition: 'Number format the weights are stored in (F16, BF16, F32).'});
		const te = model.modules.filter(m => m.component !== 'unet').length;
		fields.push({
			key: 'modules',
			label: 'Modules',
			value: `${model.modules.length} (${model.modules.length - te} U-Net/transformer, ${te} text encoder)${model.unknownTensors.length > 0 ? `, ${model.unknownTensors.length} unrecognised tensors` : ''}`,
			definition: 'Layers of the base model this LoRA changes, split by component.',
		});
	}

	const hashKeys = ['sshs_model_hash', 'sshs_legacy_hash', 'modelspec.hash_sha256'].filter(key => metadata[key] !== undefined && metadata[key] !== '');
	fields.push({
		key: 'hashes',
		label: 'Hashes in metadata',
		value: hashKeys.length > 0 ? hashKeys.join(', ') : 'none',
		definition: 'Hashes the trainer stored (sshs_model_hash = SHA-256 of the tensor data); used to look the file up on Civitai.',
		role: hashKeys.length > 0 ? 'value' : 'dim',
	});
	return fields;
}

export function overviewLines(row: FileRow, stats: LoraStats | undefined, options: OverviewOptions): Line[] {
	const {env, width} = options;
	const g = glyphs(env);
	const entry = row.entry;
	const training = trainingOf(entry);
	const lines: Line[] = [line([seg('File', 'heading'), seg(options.explain ? '  (i hides definitions)' : '  (i shows all definitions)', 'dim')])];
	lines.push(...fieldLines(identityFields(row), options));
	for (const warning of entry?.model?.warnings ?? []) {
		lines.push(line([seg(`${g.warn} `, 'warn'), seg(clean(warning, env, width - 2), 'warn')], 'model-warning', 'A problem found while reading the tensor names and shapes.'));
	}

	if (training) {
		if (!training.hasTrainingMetadata) {
			lines.push(blank, line([seg('No training metadata (ss_*) in this file.', 'dim')]));
		}

		for (const group of presentTrainingGroups(training)) {
			lines.push(blank, line([seg(group.title, 'heading')]));
			lines.push(
				...fieldLines(
					group.rows.map(r => ({key: r.field.key, label: r.field.label, value: r.value, definition: r.field.definition})),
					options,
				),
			);
		}

		const findings = findTrainingIssues({training, model: entry?.model ?? null, stats: stats ?? null});
		lines.push(blank, line([seg(`Findings (${findings.length})`, 'heading'), seg(stats ? '' : '  weight checks run once Blocks stats exist', 'dim')]));
		if (findings.length === 0) {
			lines.push(line([seg(`${g.check} nothing unusual found`, 'ok')]));
		}

		for (const finding of findings) {
			const role: Role = finding.severity === 'warning' ? 'warn' : 'text';
			lines.push(line([seg(finding.severity === 'warning' ? `${g.warn} ` : `${g.dot} `, role), seg(clean(finding.title, env, width - 2), role)], `finding:${finding.id}`, finding.reason));
			for (const text of wrap(clean(finding.reason, env, 2000), Math.max(10, width - 2), 6)) {
				lines.push(line([seg('  '), seg(text, 'dim')]));
			}
		}
	}

	return lines;
}
