// Runs the CLI from source (tsx) as a child process and collects its output.
import {spawn} from 'node:child_process';
import path from 'node:path';
import process from 'node:process';
import {fileURLToPath} from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export type CliResult = {code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string};

/**
 * `lorascope <args>` with extra environment variables; SIGINT after `sigintAfterMs` when given.
 * `entry` replaces how the CLI is started (node arguments before `args`; default: the sources
 * through tsx), so the bench can run the build the same way.
 */
export async function runCli(args: string[], options: {env?: Record<string, string>; sigintAfterMs?: number; entry?: string[]} = {}): Promise<CliResult> {
	const entry = options.entry ?? ['--import', 'tsx', path.join(root, 'source/cli.tsx')];
	return new Promise((resolve, reject) => {
		const child = spawn(process.execPath, [...entry, ...args], {cwd: root, env: {...process.env, ...options.env}, stdio: ['ignore', 'pipe', 'pipe']});
		let stdout = '';
		let stderr = '';
		child.stdout.on('data', (chunk: Buffer) => {
			stdout += chunk.toString();
		});
		child.stderr.on('data', (chunk: Buffer) => {
			stderr += chunk.toString();
		});
		if (options.sigintAfterMs !== undefined) {
			setTimeout(() => child.kill('SIGINT'), options.sigintAfterMs);
		}

		child.on('error', reject);
		child.on('close', (code, signal) => {
			resolve({code, signal, stdout, stderr});
		});
	});
}
