"""The words synthetic prompts are made of, and the tiny tokenizer is trained on.

One list for both, so every synthetic prompt word is in the tiny model's vocabulary.
"""

WORDS = (
    "time year people way day man thing woman life child world school state family student group country "
    "problem hand part place case week company system program question work government number night point "
    "home water room mother area money story fact month lot right study book eye job word business issue "
    "side kind head house service friend father power hour game line end member law car city community name "
    "president team minute idea kid body information back parent face others level office door health person "
    "art war history party result change morning reason research girl guy moment air teacher force education "
    "river mountain garden window market bridge engine signal pattern measure answer season letter island "
    "forest valley harbor theory method record network memory picture voice silver orange yellow quiet simple "
    "early later under between across during before after always never often seldom quickly slowly carefully "
    "build carry draw drive follow gather hold keep learn listen move open reach read send serve show start "
    "stop think travel turn understand walk watch write bright cold deep dry heavy light long narrow wide"
).split()
