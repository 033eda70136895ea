import { z } from 'zod';

/** Version names become parts of Service names: a DNS-1123 label, short enough for `<name>-<version>-cpu`. */
export const VersionNameSchema = z
  .string()
  .min(1)
  .max(20)
  .regex(/^[a-z]([-a-z0-9]*[a-z0-9])?$/)
  .meta({ description: 'DNS label: lower-case letters, digits and "-", starting with a letter.' });
