/** camelCase option names to snake_case (Ansible) or kebab-case (command line). */
export function convertNameLight(name: string, naming: 'camel' | 'snake' | 'kebab'): string {
  if (naming === 'camel') return name;
  const snake = name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  return naming === 'snake' ? snake : snake.replace(/_/g, '-');
}

/** snake_case back to camelCase. */
export function snakeToCamel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}
