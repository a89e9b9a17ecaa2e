// Client-side encryption settings (age, https://age-encryption.org/v1): the
// recipients (public keys) a backup is encrypted to. Only public keys are
// ever part of a definition or of the runner config; the identities (private
// keys) that decrypt a backup are given to a restore or verify, never here.
import { createHash } from "node:crypto";
import { z } from "zod";
import { secretKeyRef } from "./common.ts";
import { bech32Decode } from "../common/bech32.ts";

/** An age X25519 recipient: "age1" + 58 bech32 characters (32 bytes of key and a 6-character checksum). */
export const AGE_RECIPIENT_PATTERN = "^age1[02-9ac-hj-np-z]{58}$";
const recipientRe = new RegExp(AGE_RECIPIENT_PATTERN);
/** True when `s` is a well-formed age X25519 recipient (lower case, bech32 checksum correct, 32 bytes of key). */
export function isAgeRecipient(s: string): boolean {
  // The pattern fixes the length: 52 five-bit groups, 256 bits of key and 4 zero padding bits.
  return recipientRe.test(s) && bech32Decode(s, "age") !== undefined;
}

/**
 * The fingerprint of a recipient recorded in a backup's manifest: the first
 * 16 hex digits of the SHA-256 of the recipient string
 * (`printf %s age1… | sha256sum | cut -c1-16`). It says which key opens a
 * backup without holding the key itself.
 */
export function recipientFingerprint(recipient: string): string {
  return createHash("sha256").update(recipient, "utf8").digest("hex").slice(0, 16);
}

/** Why a string is not a recipient; names the value unless it looks like a private key. */
export function recipientProblem(s: string): string | undefined {
  if (isAgeRecipient(s)) return undefined;
  if (/^AGE-SECRET-KEY-/i.test(s.trim())) return "is an age identity (a private key), not a recipient: give its public key (age-keygen -y), and treat this identity as leaked";
  const shown = s.length > 80 ? `${s.slice(0, 80)}…` : s;
  return `"${shown}" is not an age X25519 recipient (age1 followed by 58 bech32 characters, as age-keygen prints)`;
}

/**
 * Recipients as they appear in a recipients file or a Secret: one per line;
 * blank lines and lines starting with # are ignored (the format `age -R` reads).
 */
export function parseRecipientsText(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
}

const recipient = z
  .string()
  .regex(recipientRe, { error: (iss) => recipientProblem(String(iss.input)) ?? "is not an age X25519 recipient" })
  .superRefine((s, ctx) => {
    // The regex above is what the CRD checks too; the bech32 checksum is checked here.
    if (recipientRe.test(s) && !isAgeRecipient(s)) ctx.addIssue({ code: "custom", message: recipientProblem(s)! });
  })
  .describe("An age X25519 recipient (public key), age1…");

/** One or more distinct recipients. */
const recipientList = z
  .array(recipient)
  .min(1)
  .superRefine((list, ctx) => {
    const seen = new Set<string>();
    list.forEach((s, i) => {
      if (seen.has(s)) ctx.addIssue({ code: "custom", path: [i], message: `"${s}" is listed twice` });
      seen.add(s);
    });
  });

export const ENCRYPTION_ONE_SOURCE_MESSAGE = "encryption: set exactly one of recipients and recipientsSecretRef";
export const NATIVE_ENCRYPTION_MESSAGE =
  "encryption applies to the dump method only: with method native ClickHouse writes the backup to S3 itself and the runner never sees the data (use method dump, or leave encryption out)";

/** As written in a BackupDefinition: the recipients, or a Secret (in the definition's namespace) holding them one per line. */
export const encryptionSpec = z
  .strictObject({
    recipients: recipientList
      .optional()
      .describe("age X25519 recipients (public keys, age1…); every data object can be opened by any one of their identities (for example a team key and a break-glass key)"),
    recipientsSecretRef: secretKeyRef
      .optional()
      .describe("A Secret key (in the definition's namespace) holding the recipients, one per line (# comments allowed), as an age recipients file"),
  })
  .superRefine((e, ctx) => {
    if ((e.recipients === undefined) === (e.recipientsSecretRef === undefined)) ctx.addIssue({ code: "custom", message: ENCRYPTION_ONE_SOURCE_MESSAGE });
  })
  .describe(
    "Client-side encryption with age: every data object is an age file (…native.zst.age) that only the identities of these recipients can open; the runner holds no identity and cannot read the backups it writes. Dump method only",
  );
export type EncryptionSpec = z.infer<typeof encryptionSpec>;

export const encryptionValidations: { rule: string; message: string; fieldPath?: string }[] = [
  {
    rule: "!has(self.encryption) || (has(self.encryption.recipients) != has(self.encryption.recipientsSecretRef))",
    message: ENCRYPTION_ONE_SOURCE_MESSAGE,
    fieldPath: ".encryption",
  },
  {
    rule: "!has(self.encryption) || !has(self.clickhouse.method) || self.clickhouse.method != 'native'",
    message: NATIVE_ENCRYPTION_MESSAGE,
    fieldPath: ".encryption",
  },
];

/** As the runner gets it: the recipients resolved; never an identity. */
export const encryptionRunnerConfig = z
  .strictObject({
    recipients: recipientList.describe("age X25519 recipients (public keys) every data object is encrypted to"),
    identityDir: z
      .string()
      .refine((s) => s.startsWith("/"), "must be an absolute path")
      .optional()
      .describe(
        "Directory the runner reads identity files from when a restore or verify request names one (identityFile, relative to it); the controller mounts the optional Secret <runner name>-identity there. Without it, API restores of encrypted backups are refused",
      ),
  })
  .describe("Client-side encryption with age (dump method only): the recipients; never an identity");
export type EncryptionRunnerConfig = z.infer<typeof encryptionRunnerConfig>;
