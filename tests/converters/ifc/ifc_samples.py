"""IFC test helpers: the real sample files and a hand-written IFC2X3 model placed in Jinan (ePSet georef)."""

from __future__ import annotations

from pathlib import Path

from cim.settings import Settings

IFC_DIR = Path(__file__).resolve().parents[4] / "shared" / "data" / "ifc"
WORLD = (-180.0, -90.0, 180.0, 90.0)


def ifc(name: str) -> Path:
    """A real sample file (never the benchmark)."""
    path = IFC_DIR / name
    assert path.is_file(), f"missing sample {path}"
    return path


def foreign(storage_crs: str) -> Settings:
    """Settings to load a foreign sample on purpose: its own metric CRS, the region widened to the world."""
    return Settings(storage_crs=storage_crs, region_bbox=WORLD, local_crs_file=None)


#: ePSet_MapConversion (IFC2X3) → EPSG:4548 in Jinan; project unit mm; Scale 0.001 as IFC defines it;
#: one wall (red style, psets, quantities, material, GB/T 51269 classification) and one slab whose
#: extrusion depth is 0 (geometry fails). WALL_NAME is replaced to make a changed version.
JINAN_IFC = r"""ISO-10303-21;
HEADER;
FILE_DESCRIPTION(('ViewDefinition [CoordinationView]'),'2;1');
FILE_NAME('jinan_epset.ifc','2025-01-01T00:00:00',('cim tests'),('cim'),'hand-written','cim test fixture','');
FILE_SCHEMA(('IFC2X3'));
ENDSEC;
DATA;
#1=IFCPERSON($,'Test',$,$,$,$,$,$);
#2=IFCORGANIZATION($,'CIM',$,$,$);
#3=IFCPERSONANDORGANIZATION(#1,#2,$);
#4=IFCAPPLICATION(#2,'1.0','CIM test fixture','cimtest');
#5=IFCOWNERHISTORY(#3,#4,$,.ADDED.,$,$,$,1700000000);
#10=IFCSIUNIT(*,.LENGTHUNIT.,.MILLI.,.METRE.);
#11=IFCSIUNIT(*,.AREAUNIT.,$,.SQUARE_METRE.);
#12=IFCSIUNIT(*,.VOLUMEUNIT.,$,.CUBIC_METRE.);
#13=IFCSIUNIT(*,.PLANEANGLEUNIT.,$,.RADIAN.);
#14=IFCUNITASSIGNMENT((#10,#11,#12,#13));
#20=IFCCARTESIANPOINT((0.,0.,0.));
#21=IFCDIRECTION((0.,0.,1.));
#22=IFCDIRECTION((1.,0.,0.));
#23=IFCAXIS2PLACEMENT3D(#20,#21,#22);
#24=IFCGEOMETRICREPRESENTATIONCONTEXT($,'Model',3,1.E-05,#23,$);
#25=IFCGEOMETRICREPRESENTATIONSUBCONTEXT('Body','Model',*,*,*,*,#24,$,.MODEL_VIEW.,$);
#30=IFCPROJECT('2ZxcVbNmAsDfGhJkLqWeR1',#5,'Jinan test',$,$,$,$,(#24),#14);
#31=IFCLOCALPLACEMENT($,#23);
#32=IFCSITE('2ZxcVbNmAsDfGhJkLqWeR2',#5,'Site',$,$,#31,$,$,.ELEMENT.,$,$,$,$,$);
#33=IFCRELAGGREGATES('2ZxcVbNmAsDfGhJkLqWeR3',#5,$,$,#30,(#32));
#34=IFCLOCALPLACEMENT(#31,#23);
#35=IFCBUILDING('2ZxcVbNmAsDfGhJkLqWeR4',#5,'Building',$,$,#34,$,$,.ELEMENT.,$,$,$);
#36=IFCRELAGGREGATES('2ZxcVbNmAsDfGhJkLqWeR5',#5,$,$,#32,(#35));
#37=IFCCARTESIANPOINT((0.,0.,3000.));
#38=IFCAXIS2PLACEMENT3D(#37,$,$);
#39=IFCLOCALPLACEMENT(#34,#38);
#40=IFCBUILDINGSTOREY('2ZxcVbNmAsDfGhJkLqWeR6',#5,'F2',$,$,#39,$,$,.ELEMENT.,3000.);
#41=IFCRELAGGREGATES('2ZxcVbNmAsDfGhJkLqWeR7',#5,$,$,#35,(#40));
#50=IFCPROPERTYSINGLEVALUE('Eastings',$,IFCLENGTHMEASURE(500000.),$);
#51=IFCPROPERTYSINGLEVALUE('Northings',$,IFCLENGTHMEASURE(4057669.9),$);
#52=IFCPROPERTYSINGLEVALUE('OrthogonalHeight',$,IFCLENGTHMEASURE(30.5),$);
#53=IFCPROPERTYSINGLEVALUE('XAxisAbscissa',$,IFCREAL(0.8),$);
#54=IFCPROPERTYSINGLEVALUE('XAxisOrdinate',$,IFCREAL(0.6),$);
#55=IFCPROPERTYSINGLEVALUE('Scale',$,IFCREAL(0.001),$);
#56=IFCPROPERTYSET('2ZxcVbNmAsDfGhJkLqWeR8',#5,'ePSet_MapConversion',$,(#50,#51,#52,#53,#54,#55));
#57=IFCPROPERTYSINGLEVALUE('Name',$,IFCLABEL('EPSG:4548'),$);
#58=IFCPROPERTYSINGLEVALUE('VerticalDatum',$,IFCLABEL('Yellow Sea 1985'),$);
#59=IFCPROPERTYSINGLEVALUE('MapUnit',$,IFCLABEL('METRE'),$);
#60=IFCPROPERTYSET('2ZxcVbNmAsDfGhJkLqWeR9',#5,'ePSet_ProjectedCRS',$,(#57,#58,#59));
#61=IFCRELDEFINESBYPROPERTIES('2ZxcVbNmAsDfGhJkLqWeRA',#5,$,$,(#32),#56);
#62=IFCRELDEFINESBYPROPERTIES('2ZxcVbNmAsDfGhJkLqWeRB',#5,$,$,(#32),#60);
#70=IFCRECTANGLEPROFILEDEF(.AREA.,$,#72,5000.,200.);
#71=IFCCARTESIANPOINT((2500.,100.));
#72=IFCAXIS2PLACEMENT2D(#71,$);
#73=IFCEXTRUDEDAREASOLID(#70,#23,#21,3000.);
#74=IFCSHAPEREPRESENTATION(#25,'Body','SweptSolid',(#73));
#75=IFCPRODUCTDEFINITIONSHAPE($,$,(#74));
#76=IFCLOCALPLACEMENT(#39,#23);
#77=IFCWALLSTANDARDCASE('2ZxcVbNmAsDfGhJkLqWeRC',#5,'WALL_NAME',$,$,#76,#75,'W-1');
#80=IFCEXTRUDEDAREASOLID(#70,#23,#21,0.);
#81=IFCSHAPEREPRESENTATION(#25,'Body','SweptSolid',(#80));
#82=IFCPRODUCTDEFINITIONSHAPE($,$,(#81));
#83=IFCSLAB('2ZxcVbNmAsDfGhJkLqWeRD',#5,'Broken slab',$,$,#76,#82,$,.FLOOR.);
#90=IFCRELCONTAINEDINSPATIALSTRUCTURE('2ZxcVbNmAsDfGhJkLqWeRE',#5,$,$,(#77,#83),#40);
#100=IFCPROPERTYSINGLEVALUE('FireRating',$,IFCLABEL('2h'),$);
#101=IFCPROPERTYSINGLEVALUE('IsExternal',$,IFCBOOLEAN(.T.),$);
#102=IFCPROPERTYSET('2ZxcVbNmAsDfGhJkLqWeRF',#5,'Pset_WallCommon',$,(#100,#101));
#103=IFCRELDEFINESBYPROPERTIES('2ZxcVbNmAsDfGhJkLqWeRG',#5,$,$,(#77),#102);
#104=IFCQUANTITYLENGTH('Length',$,$,5000.);
#105=IFCELEMENTQUANTITY('2ZxcVbNmAsDfGhJkLqWeRH',#5,'Qto_WallBaseQuantities',$,$,(#104));
#106=IFCRELDEFINESBYPROPERTIES('2ZxcVbNmAsDfGhJkLqWeRI',#5,$,$,(#77),#105);
#107=IFCMATERIAL('C30 \X2\6DF751DD571F\X0\');
#108=IFCRELASSOCIATESMATERIAL('2ZxcVbNmAsDfGhJkLqWeRJ',#5,$,$,(#77),#107);
#109=IFCCLASSIFICATION('MOHURD',$,$,'GB/T 51269');
#110=IFCCLASSIFICATIONREFERENCE($,'30-01.10.00','\X2\5899\X0\',#109);
#111=IFCRELASSOCIATESCLASSIFICATION('2ZxcVbNmAsDfGhJkLqWeRK',#5,$,$,(#77),#110);
#112=IFCCOLOURRGB($,1.,0.,0.);
#113=IFCSURFACESTYLESHADING(#112);
#114=IFCSURFACESTYLE($,.BOTH.,(#113));
#115=IFCPRESENTATIONSTYLEASSIGNMENT((#114));
#116=IFCSTYLEDITEM(#73,(#115),$);
ENDSEC;
END-ISO-10303-21;
"""


def jinan_ifc(folder: Path, wall_name: str = "Wall A", name: str = "jinan_epset.ifc") -> Path:
    """Write the Jinan test model into ``folder``."""
    path = folder / name
    path.write_text(JINAN_IFC.replace("WALL_NAME", wall_name), encoding="ascii")
    return path
