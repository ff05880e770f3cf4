@decorator
@other(1,
       2)
def decorated(a,
              b): return a

class Outer(Base):
    """def not_a_def(): in a docstring"""
    x = "def nope():"
    class Inner:
        async def go(self): pass
    def method(self):
        def helper():
            def deepest(): pass
            return '\
def also_not()'
        return helper
	def tabbed(self):
		return 1

async  def spaced():
    s = '''unterminated
def inside_string(): pass
