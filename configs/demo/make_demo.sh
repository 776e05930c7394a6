#!/usr/bin/env bash
# Regenerates the demo speech: Harvard sentences spoken by espeak-ng, 16 kHz mono FLAC.
# Needs espeak-ng and sox (Debian: apt-get install espeak-ng sox). The files are committed, so the
# demo itself needs neither.
set -euo pipefail
cd "$(dirname "$0")"
voices=(en-us en-gb en-us+f3 en-gb+m3 en-us+m7 en-gb+f4)
i=0
: > filelist.train; : > filelist.valid; : > filelist.test
while IFS= read -r sentence; do
  [ -z "$sentence" ] && continue
  v=${voices[$((i % ${#voices[@]}))]}
  name=$(printf "utt%02d" "$i")
  espeak-ng -v "$v" -s 150 -w "/tmp/$name.wav" "$sentence"
  sox "/tmp/$name.wav" -r 16000 -c 1 -b 16 "$name.flac"
  rm -f "/tmp/$name.wav"
  if [ "$i" -lt 24 ]; then list=filelist.train; elif [ "$i" -lt 30 ]; then list=filelist.valid; else list=filelist.test; fi
  echo "$name.flac" >> "$list"
  i=$((i + 1))
done < sentences.txt
