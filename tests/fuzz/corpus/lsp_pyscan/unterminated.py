def f(:
    x = (1,
  [2,
"open
def g(): pass
ÿ def h(): pass
class
def cr(): pass
