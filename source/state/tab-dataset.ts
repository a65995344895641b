// Dataset tab: training and regularisation dirs with repeats and image counts, the sizes that follow
// from them, the ss_datasets subsets (dataset-config runs) and the aspect-ratio buckets.
import type {TrainingInfo} from '../lora/metadata.js';
import {formatNumber} from './format.js';
import {bar} from './glyphs.js';
import {blank, line, seg, type Line} from './lines.js';
import {clean, fit} from './text.js';
import type {TerminalEnv} from './types.js';

function count(value: number | null): string {
	return value === null ? '-' : String(value);
}

function fact(label: string, value: string | null, env: TerminalEnv, key: string): Line {
	return line([seg(fit(label, 26, env), 'label'), seg(value ?? '-', value === null ? 'dim' : 'value')], key);
}

export function datasetLines(training: TrainingInfo | undefined, width: number, env: TerminalEnv): Line[] {
	if (!training?.hasTrainingMetadata) {
		return [line([seg('No training metadata: the dataset is unknown.', 'dim')])];
	}

	const lines: Line[] = [];
	const dirWidth = Math.max(16, width - 36);
	lines.push(line([seg('Dataset dirs', 'heading')]));
	if (training.dataset.length === 0) {
		lines.push(line([seg('ss_dataset_dirs is missing', 'dim')]));
	} else {
		lines.push(
			line([
				seg(fit('dir', dirWidth, env), 'dim'),
				seg(fit('repeats', 8, env, 'right'), 'dim'),
				seg(fit('images', 8, env, 'right'), 'dim'),
				seg(fit(env.unicode ? 'img×rep' : 'img x rep', 9, env, 'right'), 'dim'),
				seg('  kind', 'dim'),
			]),
		);
		for (const d of training.dataset) {
			const product = d.images !== null && d.repeats !== null ? String(d.images * d.repeats) : '-';
			lines.push(
				line(
					[
						seg(fit(clean(d.dir, env, 300), dirWidth, env), d.isReg ? 'dim' : 'text'),
						seg(fit(count(d.repeats), 8, env, 'right'), 'value'),
						seg(fit(count(d.images), 8, env, 'right'), 'value'),
						seg(fit(product, 9, env, 'right'), 'value'),
						seg(d.isReg ? '  reg' : '  train', d.isReg ? 'warn' : 'ok'),
					],
					`dir:${d.dir}`,
				),
			);
		}
	}

	lines.push(blank, line([seg('Sizes', 'heading')]));
	lines.push(fact('training images', training.numTrainImages === null ? null : String(training.numTrainImages), env, 'num_train_images'));
	lines.push(fact('regularisation images', training.numRegImages === null ? null : String(training.numRegImages), env, 'num_reg_images'));
	lines.push(fact('images × repeats', training.derived.imagesTimesRepeats === null ? null : String(training.derived.imagesTimesRepeats), env, 'images_x_repeats'));
	lines.push(fact('batches per epoch', training.numBatchesPerEpoch === null ? null : String(training.numBatchesPerEpoch), env, 'batches_per_epoch'));
	lines.push(fact('batch size (per device)', training.batchSizePerDevice === null ? null : String(training.batchSizePerDevice), env, 'batch_size'));
	lines.push(fact('resolution', training.resolution ? `${training.resolution[0]}×${training.resolution[1]}`.replace('×', env.unicode ? '×' : 'x') : null, env, 'resolution'));
	const bucketRange = training.minBucketReso !== null || training.maxBucketReso !== null ? `${count(training.minBucketReso)}–${count(training.maxBucketReso)}`.replace('–', env.unicode ? '–' : '-') : null;
	lines.push(fact('bucketing', training.enableBucket === null ? null : training.enableBucket ? `on${bucketRange ? `, ${bucketRange} px` : ''}` : 'off', env, 'enable_bucket'));
	if (training.meanImageAspectError !== null) {
		lines.push(fact('mean aspect-ratio error', formatNumber(training.meanImageAspectError), env, 'mean_img_ar_error'));
	}

	if (training.datasets.length > 0) {
		lines.push(blank, line([seg('Dataset config (ss_datasets)', 'heading')]));
		for (const [index, ds] of training.datasets.entries()) {
			const res = ds.resolution ? `${ds.resolution[0]}x${ds.resolution[1]}` : '-';
			lines.push(
				line(
					[
						seg(`#${index + 1} `, 'label'),
						seg(`${ds.isDreambooth === false ? 'fine-tuning' : 'dreambooth'}  ${count(ds.numTrainImages)} train / ${count(ds.numRegImages)} reg images  batch ${count(ds.batchSizePerDevice)}  ${res}`, 'value'),
					],
					`dataset:${index}`,
				),
			);
			for (const sub of ds.subsets) {
				lines.push(
					line([
						seg('   '),
						seg(fit(clean(sub.dir ?? '(no dir)', env, 200), Math.max(12, width - 40), env), sub.isReg ? 'dim' : 'text'),
						seg(` ×${count(sub.repeats)}`.replace('×', env.unicode ? '×' : 'x'), 'value'),
						seg(`  ${count(sub.images)} img`, 'value'),
						seg(sub.classTokens ? `  class "${clean(sub.classTokens, env, 30)}"` : '', 'dim'),
					]),
				);
			}
		}
	}

	lines.push(blank, line([seg('Buckets (resolution: images)', 'heading')]));
	if (training.buckets.length === 0) {
		lines.push(line([seg('no bucket info in the metadata', 'dim')]));
	} else {
		const max = Math.max(...training.buckets.map(b => b.count));
		const barWidth = Math.max(4, Math.min(40, width - 24));
		for (const b of training.buckets) {
			const res = `${b.resolution[0]}x${b.resolution[1]}`;
			lines.push(
				line(
					[
						seg(fit(res, 11, env), 'label'),
						seg(fit(bar(max > 0 ? b.count / max : 0, barWidth, env), barWidth, env), 'bar'),
						seg(fit(String(b.count), 7, env, 'right'), 'value'),
					],
					`bucket:${res}`,
				),
			);
		}
	}

	return lines;
}
