// `npm run bench`: throughput and ratio figures (never asserted in tests). Each suite prints
// its own table; suites whose inputs are missing say so and are skipped.
import process from 'node:process';

type Suite = {name: string; load: () => Promise<{run: (options: {quick: boolean}) => Promise<void>}>};

const suites: Suite[] = [
	{name: 'core', load: async () => import('./core.js')},
	{name: 'engine', load: async () => import('./engine.js')},
	{name: 'resize', load: async () => import('./resize.js')},
];

const only = process.argv.slice(2).filter(a => !a.startsWith('-'));
const quick = process.argv.includes('--quick');
for (const suite of suites) {
	if (only.length > 0 && !only.includes(suite.name)) {
		continue;
	}

	console.log(`\n## ${suite.name}`);
	const module = await suite.load();
	await module.run({quick});
}
