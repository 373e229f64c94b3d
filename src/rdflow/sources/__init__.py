"""Where the study's pictures come from: image datasets (:mod:`.datasets`), raw/Y4M video files
(:mod:`.video`), downloaded sequence archives (:mod:`.archives`) and the config's sequences and
frame selections (:mod:`.sequences`)."""
